import { Inject, Injectable, Logger, type OnApplicationShutdown } from '@nestjs/common';
import { packageInfo } from '../common/package-info.js';
import type { AppConfig } from '../config/app-config.js';
import { APP_CONFIG } from '../config/config.module.js';
import { InstanceRegistry } from '../database/instance-registry.js';
import { otlpTracesUrl, startTracing, type TracingHandle } from './tracing.js';

/**
 * Turns tracing on at start when OTEL_EXPORTER_OTLP_ENDPOINT is set (in the constructor, so before
 * any module's init hooks: the request observer installs its span hooks only when tracing is on),
 * and flushes buffered spans at shutdown, after the HTTP server has drained.
 */
@Injectable()
export class TracingLifecycle implements OnApplicationShutdown {
  private readonly logger = new Logger('Tracing');
  private readonly handle: TracingHandle | null;

  constructor(@Inject(APP_CONFIG) config: AppConfig, instance: InstanceRegistry) {
    if (!config.otlpEndpoint) {
      this.handle = null;
      return;
    }
    this.handle = startTracing({
      endpoint: config.otlpEndpoint,
      serviceVersion: packageInfo().version,
      instanceId: instance.id,
      mode: config.mode,
    });
    this.logger.log(
      `tracing on: spans are exported to ${otlpTracesUrl(config.otlpEndpoint)} (OTLP/HTTP JSON)`,
    );
  }

  get enabled(): boolean {
    return this.handle !== null;
  }

  async onApplicationShutdown(): Promise<void> {
    if (!this.handle) return;
    try {
      await this.handle.shutdown();
    } catch (err) {
      this.logger.warn(
        `could not export the last spans: ${err instanceof Error ? err.message : String(err)}`,
      );
    }
  }
}
