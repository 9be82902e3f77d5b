import { Module } from '@nestjs/common';
import { PrometheusModule } from '@willsoto/nestjs-prometheus';
import { AdaptiveModule } from '../adaptive/adaptive.module.js';
import { DatabaseModule } from '../database/database.module.js';
import { KeyPoolModule } from '../key-pool/key-pool.module.js';
import { RoutingModule } from '../routing/routing.module.js';
import { StateModule } from '../state/state.module.js';
import { DashboardController } from './dashboard.controller.js';
import { HandlerContextGuard } from './handler-context.guard.js';
import { MetricsController } from './metrics.controller.js';
import { RequestObserver } from './request-observer.js';
import { StatusController } from './status.controller.js';
import { StatusSources } from './status-sources.js';
import { StatusStream } from './status-stream.js';
import { StatusService } from './status.service.js';
import { TracingLifecycle } from './tracing.lifecycle.js';

/**
 * Observability: GET /metrics (FloodgateMetrics' registry), one log line and one metric sample per
 * HTTP request (RequestObserver + HandlerContextGuard, the last global guard, which createApp
 * appends), optional OTLP
 * tracing, /api/admin/status (+ SSE stream) and the /dashboard page. Features never import this
 * module: they record into src/metrics; this module reads their public services for the status.
 */
/** Appended by createApp as the last global guard (it must run after every APP_GUARD). */
export { HandlerContextGuard };

@Module({
  imports: [
    DatabaseModule,
    StateModule,
    KeyPoolModule,
    AdaptiveModule,
    RoutingModule,
    // The package's module mounts our controller at /metrics; default metrics go to FloodgateMetrics' own registry.
    PrometheusModule.register({
      controller: MetricsController,
      path: '/metrics',
      defaultMetrics: { enabled: false },
    }),
  ],
  controllers: [StatusController, DashboardController],
  providers: [
    TracingLifecycle,
    RequestObserver,
    StatusSources,
    StatusService,
    StatusStream,
    HandlerContextGuard,
  ],
  exports: [StatusService, HandlerContextGuard],
})
export class ObservabilityModule {}
