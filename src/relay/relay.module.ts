import { Module, OnModuleInit } from '@nestjs/common';
import { AdaptiveModule } from '../adaptive/adaptive.module.js';
import { AdaptiveService } from '../adaptive/adaptive.service.js';
import { TypeOrmModule } from '@nestjs/typeorm';
import { KeyPoolModule } from '../key-pool/key-pool.module.js';
import { RateLimitModule } from '../rate-limit/rate-limit.module.js';
import { StateModule } from '../state/state.module.js';
import { AdmissionService } from './admission.service.js';
import { RelayDispatcher } from './dispatcher.js';
import { RelayController } from './relay.controller.js';
import { RelayService } from './relay.service.js';
import { RequestLogRow } from './request-log.entity.js';
import { RequestLogWriter } from './request-log.writer.js';
import { UpstreamClient } from './upstream-client.js';

/** The OpenAI-compatible relay. Top of the dependency graph: nothing imports it. */
@Module({
  imports: [
    TypeOrmModule.forFeature([RequestLogRow]),
    KeyPoolModule,
    AdaptiveModule,
    RateLimitModule,
    StateModule,
  ],
  controllers: [RelayController],
  providers: [AdmissionService, RelayDispatcher, UpstreamClient, RequestLogWriter, RelayService],
  exports: [],
})
export class RelayModule implements OnModuleInit {
  constructor(
    private readonly admission: AdmissionService,
    private readonly adaptive: AdaptiveService,
  ) {}

  /** The provider-wide retreat bucket joins the admission step (same script, same round trip). */
  onModuleInit(): void {
    this.admission.contribute(this.adaptive.retreatGate());
  }
}
