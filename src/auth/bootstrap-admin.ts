import { Inject, Injectable, Logger, OnApplicationBootstrap } from '@nestjs/common';
import { randomBytes } from 'node:crypto';
import { DataSource } from 'typeorm';
import { AuditService } from '../audit/audit.service.js';
import { StartupNotes } from '../common/startup-notes.js';
import type { AppConfig } from '../config/app-config.js';
import { APP_CONFIG } from '../config/config.module.js';
import { describeApiKey, generateApiKey } from './api-key-format.js';

export const BOOTSTRAP_ADMIN_EMAIL = 'admin@floodgate.local';
const BOOTSTRAP_LOCK = 'floodgate:bootstrap-admin';

export interface BootstrapResult {
  created: boolean;
  userId: string | null;
  /** The generated key (null when ADMIN_BOOTSTRAP_KEY was used or nothing was created). */
  generatedKey: string | null;
}

/**
 * At start, if no admin user exists, creates one with an API key: ADMIN_BOOTSTRAP_KEY when set,
 * else a generated key shown once in the start-up banner. Runs under a transaction-scoped advisory
 * lock, so instances starting together create exactly one admin.
 */
@Injectable()
export class BootstrapAdmin implements OnApplicationBootstrap {
  private readonly logger = new Logger('BootstrapAdmin');

  constructor(
    private readonly dataSource: DataSource,
    private readonly audit: AuditService,
    private readonly notes: StartupNotes,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    const result = await this.ensureAdmin();
    if (!result.created) return;
    this.logger.log(
      `no admin existed: created ${BOOTSTRAP_ADMIN_EMAIL} with ${result.generatedKey ? 'a generated API key (see the banner)' : 'the ADMIN_BOOTSTRAP_KEY API key'}`,
    );
    if (result.generatedKey) {
      this.notes.add('Bootstrap admin created', [
        `user     ${BOOTSTRAP_ADMIN_EMAIL}`,
        `API key  ${result.generatedKey}`,
        'Save this key now: it is shown only this once and cannot be recovered.',
        'Use it as "Authorization: Bearer <key>" (or x-api-key) on /api/admin/*.',
      ]);
    }
  }

  async ensureAdmin(): Promise<BootstrapResult> {
    const configured = this.config.auth.adminBootstrapKey;
    const result = await this.dataSource.transaction(async (m): Promise<BootstrapResult> => {
      await m.query('SELECT pg_advisory_xact_lock(hashtext($1))', [BOOTSTRAP_LOCK]);
      const admins = (await m.query(`SELECT 1 FROM users WHERE role = 'admin' LIMIT 1`)) as unknown[];
      if (admins.length > 0) return { created: false, userId: null, generatedKey: null };
      const material = configured ? describeApiKey(configured) : generateApiKey();
      let users = (await m.query(
        `INSERT INTO users (email, name, role) VALUES ($1, 'Floodgate admin', 'admin') ON CONFLICT DO NOTHING RETURNING id`,
        [BOOTSTRAP_ADMIN_EMAIL],
      )) as { id: string }[];
      if (users.length === 0) {
        // Someone (not an admin) already uses that email.
        users = (await m.query(
          `INSERT INTO users (email, name, role) VALUES ($1, 'Floodgate admin', 'admin') RETURNING id`,
          [`admin-${randomBytes(4).toString('hex')}@floodgate.local`],
        )) as { id: string }[];
      }
      const userId = users[0]!.id;
      const keys = (await m.query(
        `INSERT INTO api_keys (user_id, name, key_hash, prefix, last4, role, max_priority, created_by)
         VALUES ($1, 'bootstrap', $2, $3, $4, 'admin', 'urgent', $1) ON CONFLICT DO NOTHING RETURNING id`,
        [userId, material.hash, material.prefix, material.last4],
      )) as { id: string }[];
      if (keys.length === 0) {
        throw new Error(
          'ADMIN_BOOTSTRAP_KEY is already the API key of a non-admin user: choose another value',
        );
      }
      await this.audit.record(m, null, {
        action: 'user.create',
        targetType: 'user',
        targetId: userId,
        changes: {
          role: 'admin',
          reason: 'bootstrap',
          key_source: configured ? 'ADMIN_BOOTSTRAP_KEY' : 'generated',
        },
      });
      return { created: true, userId, generatedKey: configured ? null : material.raw };
    });
    return result;
  }
}
