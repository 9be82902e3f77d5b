import type { HealReport } from '../api-types.js';
import type { CommandSpec } from '../command.js';

/** Healing thousands of keys takes a while: more patience than the default 30 s. */
const HEAL_TIMEOUT_MS = 10 * 60_000;

const rotate: CommandSpec = {
  name: 'encryption rotate',
  summary: 're-encrypt every upstream key under the current encryption key now, and report',
  usage: '',
  description: [
    'Key rotation, step by step:',
    "  1. generate a key:  node -e \"console.log('k2026:' + require('crypto').randomBytes(32).toString('base64'))\"",
    '  2. put it FIRST in ENCRYPTION_KEYS and keep the old one (ENCRYPTION_KEYS=k2026:<new>,k2025:<old>),',
    '     restart every instance (each start heals too)',
    '  3. floodgate encryption rotate: heals what is left now (POST /api/admin/provider-keys/heal)',
    '     and reports; "broken" counts keys no configured key decrypts',
    '  4. when broken is 0 (or those keys are replaced), drop the old key from ENCRYPTION_KEYS and restart',
    'Safe to repeat; batched and resumable.',
  ],
  options: {},
  positionals: { min: 0, max: 0 },
  async run(ctx) {
    const report = await ctx
      .client()
      .post<HealReport>('/api/admin/provider-keys/heal', undefined, { timeoutMs: HEAL_TIMEOUT_MS });
    if (ctx.json) return ctx.out.json(report);
    ctx.out.line(`Current encryption key: ${report.encryption_key_id}`);
    ctx.out.record([
      ['needed work', report.total],
      ['re-encrypted', report.healed],
      ['recovered', report.recovered],
      ['broken', report.broken],
    ]);
    if (report.broken > 0) {
      ctx.out.warn(
        `${report.broken} upstream key(s) cannot be decrypted with any configured encryption key: replace their values ` +
          '(PATCH /api/admin/provider-keys/{id} with a new "key") or put the missing key back into ENCRYPTION_KEYS; ' +
          'see floodgate upstream-keys list (state broken)',
      );
    } else {
      ctx.out.line(
        `Every upstream key is sealed under "${report.encryption_key_id}": older ENCRYPTION_KEYS entries can be removed.`,
      );
    }
  },
};

export const ENCRYPTION_COMMANDS = [rotate];
