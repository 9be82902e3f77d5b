import { Inject, Injectable, Logger, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import type { AppConfig } from '../../config/app-config.js';
import { APP_CONFIG } from '../../config/config.module.js';
import { SecretSealerService } from '../../key-pool/services/secret-sealer.service.js';
import { UpstreamGuardService } from '../../key-pool/services/upstream-guard.service.js';
import { judgeAttempt } from '../domain/backoff.js';
import { webhookSecretAad } from '../domain/events.js';
import { SIGNATURE_HEADER, signBody } from '../domain/signature.js';
import { DeliveryRepository, type ClaimedDelivery } from '../infrastructure/delivery.repository.js';
import { WebhookSender } from '../infrastructure/webhook-sender.js';

/** Deliveries claimed per round. */
const BATCH = 10;
/** A claim outlives the attempt by this much (then another instance may take the row over). */
const CLAIM_MARGIN_MS = 10_000;

/**
 * Sends due deliveries: every WEBHOOK_POLL_INTERVAL_MS (and at once when this instance queued
 * some), claims due rows (one instance per row, `DeliveryRepository.claimDue`), POSTs each with its
 * signature, records the attempt and schedules the next one by the backoff table. Rows live in
 * Postgres, so a delivery pending when an instance stops is sent by whichever instance runs next.
 */
@Injectable()
export class WebhookDispatcher implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger('Webhooks');
  private readonly sender: WebhookSender;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | null = null;
  private again = false;
  private closing = false;
  private lastErrorLogMs = 0;

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly deliveries: DeliveryRepository,
    private readonly sealer: SecretSealerService,
    guard: UpstreamGuardService,
  ) {
    this.sender = new WebhookSender(
      guard.connector({ timeout: config.alerts.timeoutMs }),
      config.alerts.timeoutMs,
    );
  }

  onModuleInit(): void {
    this.timer = setInterval(() => this.kick(), this.config.alerts.pollIntervalMs);
    this.timer.unref();
  }

  async onApplicationShutdown(): Promise<void> {
    this.closing = true;
    clearInterval(this.timer);
    // An attempt under way ends within WEBHOOK_TIMEOUT_MS; its claim expires anyway if we stop first.
    if (this.running)
      await Promise.race([
        this.running,
        new Promise<void>((r) => setTimeout(r, this.config.alerts.timeoutMs + 500).unref()),
      ]);
    await this.sender.close();
  }

  /** Looks for due deliveries now (or right after the round under way). */
  kick(): void {
    if (this.closing) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.rounds().finally(() => {
      this.running = null;
      if (this.again && !this.closing) {
        this.again = false;
        this.kick();
      }
    });
  }

  private async rounds(): Promise<void> {
    try {
      for (;;) {
        if (this.closing) return;
        const token = randomUUID();
        const claimed = await this.deliveries.claimDue(
          BATCH,
          this.config.alerts.timeoutMs + CLAIM_MARGIN_MS,
          token,
        );
        if (claimed.length === 0) return;
        await Promise.all(claimed.map((d) => this.attempt(d, token)));
        if (claimed.length < BATCH) return;
      }
    } catch (err) {
      const now = Date.now();
      if (now - this.lastErrorLogMs > 10_000) {
        this.lastErrorLogMs = now;
        this.logger.error({ err }, 'looking for due webhook deliveries failed');
      }
    }
  }

  private async attempt(d: ClaimedDelivery, token: string): Promise<void> {
    const attempt = d.attempts + 1;
    let secret: string | null = null;
    try {
      secret = this.sealer.open(
        { keyId: d.encryptionKeyId, ciphertext: d.secretCiphertext },
        webhookSecretAad(d.webhookId),
      );
    } catch {
      secret = null;
    }
    const sent = secret
      ? await this.sender.send(d.url, d.body, {
          [SIGNATURE_HEADER]: signBody(secret, d.body),
          'x-floodgate-event': d.eventType,
          'x-floodgate-delivery': d.id,
          'x-floodgate-attempt': String(attempt),
        })
      : {
          httpStatus: null,
          error: 'the signing secret cannot be decrypted with ENCRYPTION_KEYS (not sent)',
          durationMs: 0,
        };
    const verdict = judgeAttempt(attempt, this.config.alerts.maxAttempts, sent.httpStatus);
    const ok = await this.deliveries
      .finish(d.id, token, {
        status: verdict.status,
        retryInMs: verdict.status === 'pending' ? verdict.retryInMs : 0,
        entry: {
          attempt,
          at: new Date().toISOString(),
          http_status: sent.httpStatus,
          error: sent.error,
          duration_ms: sent.durationMs,
        },
      })
      .catch((err: unknown) => {
        this.logger.error({ err, delivery_id: d.id }, 'recording a webhook attempt failed');
        return false;
      });
    if (ok && verdict.status === 'failed')
      this.logger.warn(
        `webhook delivery ${d.id} (${d.eventType}) failed after ${attempt} attempt(s): ${sent.error ?? 'no 2xx'}`,
      );
  }
}
