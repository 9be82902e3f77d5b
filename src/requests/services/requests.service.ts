import { Injectable } from '@nestjs/common';
import { ApiError } from '../../common/api-error.js';
import { isUuid, parseRequestQuery, type RawRequestQuery } from '../domain/request-query.js';
import {
  requestDetail,
  requestPage,
  type RequestDetailView,
  type RequestPage,
} from '../domain/request-view.js';
import { RequestsRepository } from '../infrastructure/requests.repository.js';

/** The requests API over the relay's request log (docs/requests.md). */
@Injectable()
export class RequestsService {
  constructor(private readonly repository: RequestsRepository) {}

  /**
   * A page, newest first. `teamOnly`: a team_admin's own team (its team_id filter is forced; another
   * team's id is a 403).
   */
  async list(raw: RawRequestQuery, teamOnly: string | null): Promise<RequestPage> {
    const check = parseRequestQuery(raw);
    if (!check.ok) throw ApiError.badRequest(check.message, check.param);
    const query = check.query;
    if (teamOnly !== null) {
      if (query.teamId !== null && query.teamId !== teamOnly)
        throw ApiError.forbidden(
          "A team_admin may read its own team's requests only",
          'insufficient_permission',
        );
      query.teamId = teamOnly;
    }
    return requestPage(await this.repository.page(query), query.limit);
  }

  async get(id: string, teamOnly: string | null): Promise<RequestDetailView> {
    if (!isUuid(id))
      throw ApiError.notFound(`No request ${JSON.stringify(id.slice(0, 64))}`, 'not_found', 'id');
    const found = await this.repository.one(id.toLowerCase());
    // a team_admin learns nothing about other teams' requests: foreign and missing are both 404
    if (!found || (teamOnly !== null && found.row.team_id !== teamOnly))
      throw ApiError.notFound(`No request ${id}`, 'not_found', 'id');
    const ids = [...new Set((found.row.attempt_log ?? []).map((a) => a.provider_id))];
    return requestDetail(found.row, found.bodies, await this.repository.providerNames(ids.filter(isUuid)));
  }
}
