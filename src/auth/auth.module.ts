import { Module } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { TypeOrmModule } from '@nestjs/typeorm';
import { AuditModule } from '../audit/audit.module.js';
import type { AppConfig } from '../config/app-config.js';
import { APP_CONFIG } from '../config/config.module.js';
import { StateModule } from '../state/state.module.js';
import { AdminApiKeysController } from './admin-api-keys.controller.js';
import { AdminAuditController } from './admin-audit.controller.js';
import { AdminTeamsController } from './admin-teams.controller.js';
import { AdminUsersController } from './admin-users.controller.js';
import { ApiKey } from './api-key.entity.js';
import { ApiKeysService } from './api-keys.service.js';
import { AuthGuard } from './auth.guard.js';
import { BootstrapAdmin } from './bootstrap-admin.js';
import { CredentialCache } from './credential-cache.js';
import { CredentialVerifier, JWT_STRATEGY } from './credential-verifier.js';
import { JwtStrategy } from './jwt.strategy.js';
import { KeysController } from './keys.controller.js';
import { Team } from './team.entity.js';
import { TeamsService } from './teams.service.js';
import { MeController } from './me.controller.js';
import { UsageRecorder } from './usage-recorder.js';
import { User } from './user.entity.js';
import { UsersService } from './users.service.js';

/**
 * Authentication (API keys and JWTs), users, roles and the admin identity API. Registers THE
 * global guard (import this module before every other feature module so it runs first). Other
 * modules read `request.principal` (src/common/principal.ts) and never import this module's
 * internals; they may inject the exported services.
 */
@Module({
  imports: [TypeOrmModule.forFeature([User, ApiKey, Team]), StateModule, AuditModule],
  controllers: [
    MeController,
    KeysController,
    AdminUsersController,
    AdminApiKeysController,
    AdminAuditController,
    AdminTeamsController,
  ],
  providers: [
    UsersService,
    ApiKeysService,
    TeamsService,
    CredentialCache,
    UsageRecorder,
    CredentialVerifier,
    BootstrapAdmin,
    {
      provide: JWT_STRATEGY,
      inject: [APP_CONFIG],
      useFactory: (config: AppConfig): JwtStrategy | null =>
        config.auth.jwt.secret || config.auth.jwt.publicKey ? new JwtStrategy(config.auth.jwt) : null,
    },
    { provide: APP_GUARD, useClass: AuthGuard },
  ],
  exports: [UsersService, ApiKeysService, TeamsService, CredentialVerifier],
})
export class AuthModule {}
