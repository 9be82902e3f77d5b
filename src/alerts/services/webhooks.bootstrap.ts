import { Injectable, Logger, type OnApplicationBootstrap } from '@nestjs/common';
import { SecretSealerService } from '../../key-pool/services/secret-sealer.service.js';
import { webhookSecretAad } from '../domain/events.js';
import { WebhookRepository } from '../infrastructure/webhook.repository.js';

/**
 * After an ENCRYPTION_KEYS rotation, re-seals every webhook secret under the current key (as the
 * key pool's start-up heal does for upstream keys), so the old key can be dropped. A secret no
 * configured key opens is left as it is (its deliveries fail with a clear error) and logged.
 */
@Injectable()
export class WebhooksBootstrap implements OnApplicationBootstrap {
  private readonly logger = new Logger('Webhooks');

  constructor(
    private readonly webhooks: WebhookRepository,
    private readonly sealer: SecretSealerService,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    try {
      for (const w of await this.webhooks.sealedUnderOtherKeys(this.sealer.currentKeyId)) {
        const aad = webhookSecretAad(w.id);
        let secret: string;
        try {
          secret = this.sealer.open({ keyId: w.encryptionKeyId, ciphertext: w.secretCiphertext }, aad);
        } catch {
          this.logger.error(
            `webhook ${w.id}: its signing secret cannot be decrypted with ENCRYPTION_KEYS (key "${w.encryptionKeyId}" missing?); its deliveries will fail until it is recreated`,
          );
          continue;
        }
        await this.webhooks.reseal(w.id, w.secretCiphertext, this.sealer.seal(secret, aad));
      }
    } catch (err) {
      this.logger.error({ err }, 're-sealing webhook secrets failed');
    }
  }
}
