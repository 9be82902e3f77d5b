import { Module } from '@nestjs/common';
import { RequestsRepository } from './infrastructure/requests.repository.js';
import { RequestsController } from './requests.controller.js';
import { BodyCaptureService } from './services/body-capture.service.js';
import { BodyRetentionService } from './services/body-retention.service.js';
import { RequestsService } from './services/requests.service.js';

/**
 * The requests API (docs/requests.md): reads the request log the relay writes (the table is their
 * shared contract: this module never imports the relay) and owns body capture's rules — redaction,
 * the cap (BodyCaptureService, which the relay calls when capture is on) and retention.
 */
@Module({
  controllers: [RequestsController],
  providers: [RequestsRepository, RequestsService, BodyCaptureService, BodyRetentionService],
  exports: [BodyCaptureService],
})
export class RequestsModule {}
