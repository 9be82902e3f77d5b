import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { DocumentBuilder, SwaggerModule, type OpenAPIObject } from '@nestjs/swagger';
import { ErrorDetailDto, ErrorResponseDto } from '../common/error.dto.js';
import { packageInfo } from '../common/package-info.js';

export function buildOpenApiDocument(app: NestFastifyApplication): OpenAPIObject {
  const pkg = packageInfo();
  const config = new DocumentBuilder()
    .setTitle('Floodgate')
    .setVersion(pkg.version)
    .setDescription(
      'Self-hosted LLM API gateway. Apps call one OpenAI-compatible endpoint (/v1) with their own ' +
        'API keys; Floodgate authenticates, rate-limits, queues by priority (X-Priority) and spreads ' +
        'the load over a pool of upstream provider keys.\n\n' +
        'Every error, on every route, has one shape: ' +
        '`{"error": {"type", "code", "message", "param", "request_id"}}` (see the ErrorResponse schema). ' +
        'Every response carries `x-request-id`.',
    )
    .addBearerAuth(
      { type: 'http', scheme: 'bearer', description: 'A client API key (fg_…) or a JWT' },
      'bearer',
    )
    .addApiKey(
      { type: 'apiKey', in: 'header', name: 'x-api-key', description: 'A client API key (fg_…)' },
      'api-key',
    )
    .build();
  return SwaggerModule.createDocument(app, config, { extraModels: [ErrorResponseDto, ErrorDetailDto] });
}

export function setupSwagger(app: NestFastifyApplication): void {
  const document = buildOpenApiDocument(app);
  SwaggerModule.setup('docs', app, document, {
    jsonDocumentUrl: 'docs-json',
    customSiteTitle: 'Floodgate API',
    swaggerOptions: { persistAuthorization: true, displayRequestDuration: true },
  });
}
