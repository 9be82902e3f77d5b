import { Global, Module } from '@nestjs/common';
import { FloodgateMetrics } from './floodgate-metrics.js';

/**
 * Infrastructure: the metric instruments, one registry per application. Global so any feature
 * records into `FloodgateMetrics` without wiring; the Observability module serves /metrics.
 */
@Global()
@Module({
  providers: [{ provide: FloodgateMetrics, useFactory: () => new FloodgateMetrics() }],
  exports: [FloodgateMetrics],
})
export class MetricsModule {}
