import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { AuditModule } from '../audit/audit.module.js';
import type { AppConfig } from '../config/app-config.js';
import { APP_CONFIG } from '../config/config.module.js';
import { StateModule } from '../state/state.module.js';
import { KeyCipher } from './domain/key-cipher.js';
import { KeyPoolAdminService } from './services/key-pool-admin.service.js';
import { KeyPoolBootstrap } from './services/key-pool.bootstrap.js';
import { KeyPoolService } from './services/key-pool.service.js';
import { KeyUsageMinute } from './infrastructure/key-usage-minute.entity.js';
import { KeyUsageRecorder } from './infrastructure/key-usage.recorder.js';
import { ProviderKey } from './infrastructure/provider-key.entity.js';
import { ProviderKeyRepository } from './infrastructure/provider-key.repository.js';
import { ProviderKeysController } from './provider-keys.controller.js';
import { Provider } from './infrastructure/provider.entity.js';
import { ProviderRepository } from './infrastructure/provider.repository.js';
import { ProvidersController } from './providers.controller.js';
import { SecretSealerService } from './services/secret-sealer.service.js';
import { UpstreamGuardService } from './services/upstream-guard.service.js';

/**
 * Providers and their encrypted upstream keys; atomic limit-aware key selection (KeyPoolService),
 * cooldowns, usage, the SSRF guard (UpstreamGuardService), the cipher for other modules' secrets
 * (SecretSealerService) and the admin API. See docs/key-pool.md.
 */
@Module({
  imports: [TypeOrmModule.forFeature([Provider, ProviderKey, KeyUsageMinute]), AuditModule, StateModule],
  controllers: [ProvidersController, ProviderKeysController],
  providers: [
    {
      provide: KeyCipher,
      inject: [APP_CONFIG],
      useFactory: (config: AppConfig) => new KeyCipher(config.encryption.keys),
    },
    ProviderRepository,
    ProviderKeyRepository,
    KeyUsageRecorder,
    KeyPoolService,
    KeyPoolAdminService,
    UpstreamGuardService,
    SecretSealerService,
    KeyPoolBootstrap,
  ],
  exports: [KeyPoolService, UpstreamGuardService, SecretSealerService],
})
export class KeyPoolModule {}
