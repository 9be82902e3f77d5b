import { Module, OnModuleInit } from '@nestjs/common';
import { AdaptiveModule } from '../adaptive/adaptive.module.js';
import { AdaptiveService } from '../adaptive/services/adaptive.service.js';
import { AlertsModule } from '../alerts/alerts.module.js';
import { TypeOrmModule } from '@nestjs/typeorm';
import { KeyPoolModule } from '../key-pool/key-pool.module.js';
import { RateLimitModule } from '../rate-limit/rate-limit.module.js';
import { RequestsModule } from '../requests/requests.module.js';
import { RoutingModule } from '../routing/routing.module.js';
import { SpendModule } from '../spend/spend.module.js';
import { StateModule } from '../state/state.module.js';
import { AdmissionGrants } from './admission-grants.js';
import { AdmissionService } from './admission.service.js';
import { AnswerCharge } from './infrastructure/answer-charge.js';
import { SpendBudgets } from './infrastructure/spend-budgets.js';
import { RelayDispatcher } from './dispatcher.js';
import { RelayController } from './relay.controller.js';
import { RelayService } from './relay.service.js';
import { RequestLogRow } from './infrastructure/request-log.entity.js';
import { RequestLogWriter } from './infrastructure/request-log.writer.js';
import { UpstreamClient } from './infrastructure/upstream-client.js';
import { AccountStage } from './stages/account.stage.js';
import { AdmitStage } from './stages/admit.stage.js';
import { JsonResponder } from './stages/json-responder.js';
import { LeaseKeeper } from './stages/lease-keeper.js';
import { RouteStage } from './stages/route.stage.js';
import { SendStage } from './stages/send.stage.js';
import { SseResponder } from './stages/sse-responder.js';
import { ResponseOwners } from './infrastructure/response-owners.js';
import { ResponsesStage } from './stages/responses.stage.js';

/** The OpenAI-compatible relay. Top of the dependency graph: nothing imports it. */
@Module({
  imports: [
    TypeOrmModule.forFeature([RequestLogRow]),
    KeyPoolModule,
    AdaptiveModule,
    RateLimitModule,
    RoutingModule,
    SpendModule,
    StateModule,
    AlertsModule,
    RequestsModule,
  ],
  controllers: [RelayController],
  providers: [
    AdmissionGrants,
    AdmissionService,
    RelayDispatcher,
    UpstreamClient,
    RequestLogWriter,
    AnswerCharge,
    SpendBudgets,
    LeaseKeeper,
    RouteStage,
    AdmitStage,
    SendStage,
    JsonResponder,
    SseResponder,
    ResponseOwners,
    ResponsesStage,
    AccountStage,
    RelayService,
  ],
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
