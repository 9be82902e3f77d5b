import { Body, Controller, Delete, Get, HttpCode, Param, Patch, Post, Req } from '@nestjs/common';
import {
  ApiBadRequestResponse,
  ApiConflictResponse,
  ApiCreatedResponse,
  ApiNoContentResponse,
  ApiNotFoundResponse,
  ApiOkResponse,
  ApiOperation,
  ApiParam,
  ApiTags,
} from '@nestjs/swagger';
import type { FastifyRequest } from 'fastify';
import { ErrorResponseDto } from '../common/error.dto.js';
import { RequirePermission } from '../common/permissions.js';
import { CreateRouteDto, RouteDto, UpdateRouteDto } from './dto/route.dto.js';
import { RoutesService } from './services/routes.service.js';

const ID = { name: 'id', description: 'Route id (uuid)', example: '5d0c8f3e-2a61-4c55-9b7a-0f1e2d3c4b5a' };

/** Routes: model aliases → targets (docs/routes.md). Same permissions as providers. */
@ApiTags('routes')
@Controller('api/admin/routes')
export class RoutesController {
  constructor(private readonly routes: RoutesService) {}

  @Get()
  @RequirePermission('providers', 'read')
  @ApiOperation({
    summary: 'List routes',
    description:
      'Every route, enabled or not, by model. `targets[].provider` is the provider’s name, null when the provider was deleted (the relay skips such a target).',
  })
  @ApiOkResponse({ type: [RouteDto] })
  list(): Promise<RouteDto[]> {
    return this.routes.listViews();
  }

  @Post()
  @RequirePermission('providers', 'write')
  @ApiOperation({
    summary: 'Create a route',
    description:
      'Maps the model name clients send (`model`) to targets (provider, upstream model) in tiers with weights. A route whose model equals a provider’s model id takes precedence over the provider. Takes effect on every instance at once (cache dropped via pub/sub). Audited.',
  })
  @ApiCreatedResponse({ type: RouteDto })
  @ApiBadRequestResponse({
    description:
      'Validation failed; param names the field (e.g. `targets[1].weight`, `targets[0].provider_id` for an unknown provider)',
    type: ErrorResponseDto,
  })
  @ApiConflictResponse({
    description: 'A route for this model exists (route_exists)',
    type: ErrorResponseDto,
  })
  async create(@Body() dto: CreateRouteDto, @Req() req: FastifyRequest): Promise<RouteDto> {
    const r = await this.routes.create(dto, RoutesService.api(req));
    return this.routes.view(r, await this.routes.providerNames());
  }

  @Get(':id')
  @RequirePermission('providers', 'read')
  @ApiOperation({
    summary: 'Get a route',
    description: 'One route with its targets and their provider names.',
  })
  @ApiParam(ID)
  @ApiOkResponse({ type: RouteDto })
  @ApiNotFoundResponse({ description: 'No such route (route_not_found)', type: ErrorResponseDto })
  get(@Param('id') id: string): Promise<RouteDto> {
    return this.routes.getView(id);
  }

  @Patch(':id')
  @RequirePermission('providers', 'write')
  @ApiOperation({
    summary: 'Update a route',
    description: 'Only the given fields change; `targets`, when given, replaces the whole list. Audited.',
  })
  @ApiParam(ID)
  @ApiOkResponse({ type: RouteDto })
  @ApiBadRequestResponse({ description: 'Validation failed (param names the field)', type: ErrorResponseDto })
  @ApiNotFoundResponse({ description: 'No such route (route_not_found)', type: ErrorResponseDto })
  @ApiConflictResponse({ description: 'Another route has this model (route_exists)', type: ErrorResponseDto })
  async update(
    @Param('id') id: string,
    @Body() dto: UpdateRouteDto,
    @Req() req: FastifyRequest,
  ): Promise<RouteDto> {
    const { route } = await this.routes.update(id, dto, RoutesService.api(req));
    return this.routes.view(route, await this.routes.providerNames());
  }

  @Delete(':id')
  @HttpCode(204)
  @RequirePermission('providers', 'write')
  @ApiOperation({
    summary: 'Delete a route',
    description: 'Clients sending its model get no route any more. Audited.',
  })
  @ApiParam(ID)
  @ApiNoContentResponse({ description: 'Deleted' })
  @ApiNotFoundResponse({ description: 'No such route (route_not_found)', type: ErrorResponseDto })
  async remove(@Param('id') id: string, @Req() req: FastifyRequest): Promise<void> {
    await this.routes.remove(id, RoutesService.api(req));
  }
}
