import { Controller, Get } from '@nestjs/common';
import { ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import { CurrentPrincipal } from '../common/current-principal.decorator.js';
import { Authenticated } from '../common/permissions.js';
import type { Principal } from '../common/principal.js';
import { ApiError } from '../common/api-error.js';
import { maskApiKey } from './api-key-format.js';
import { ApiKeysService } from './api-keys.service.js';
import { MeDto } from './dto/me.dto.js';
import { permissionSummary } from './roles.js';
import { UsersService } from './users.service.js';

@ApiTags('identity')
@Controller('api/me')
export class MeController {
  constructor(
    private readonly users: UsersService,
    private readonly keys: ApiKeysService,
  ) {}

  @Get()
  @Authenticated()
  @ApiOperation({
    summary: 'The authenticated caller',
    description:
      'Who the credentials belong to, how they authenticated, the API key used (if any) and what the effective role may do.',
  })
  @ApiOkResponse({ type: MeDto })
  async me(@CurrentPrincipal() principal: Principal): Promise<MeDto> {
    const user = await this.users.findById(principal.userId);
    if (!user) throw ApiError.unauthorized('User no longer exists', 'user_not_found');
    const key = principal.apiKeyId ? await this.keys.findById(principal.apiKeyId) : null;
    return {
      id: user.id,
      email: user.email,
      name: user.name,
      role: principal.role,
      user_role: user.role,
      method: principal.method,
      api_key: key
        ? {
            id: key.id,
            name: key.name,
            masked: maskApiKey(key.prefix, key.last4),
            role: key.role,
            limits: { rpm: key.rpm, tpm: key.tpm },
            allowed_models: key.allowedModels,
            max_priority: key.maxPriority,
            expires_at: key.expiresAt?.toISOString() ?? null,
          }
        : null,
      permissions: permissionSummary(principal.role),
    };
  }
}
