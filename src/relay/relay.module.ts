import { Module } from '@nestjs/common';
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
  imports: [TypeOrmModule.forFeature([RequestLogRow]), KeyPoolModule, RateLimitModule, StateModule],
  controllers: [RelayController],
  providers: [AdmissionService, RelayDispatcher, UpstreamClient, RequestLogWriter, RelayService],
  exports: [],
})
export class RelayModule {}
