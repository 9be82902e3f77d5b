import { Init1763769600000 } from './1763769600000-Init.js';
import { AuditLog1763769700000 } from './1763769700000-AuditLog.js';
import { Auth1763770000000 } from './1763770000000-Auth.js';
import { KeyPool1763771000000 } from './1763771000000-KeyPool.js';
import { Adaptive1763772000000 } from './1763772000000-Adaptive.js';
import { RequestLog1763773000000 } from './1763773000000-RequestLog.js';
import { EncryptionKeys1763774700000 } from './1763774700000-EncryptionKeys.js';
import { RequestLogAttempts1763775600000 } from './1763775600000-RequestLogAttempts.js';
import { Routes1763775700000 } from './1763775700000-Routes.js';
import { Spend1763775800000 } from './1763775800000-Spend.js';
import { Webhooks1763776500000 } from './1763776500000-Webhooks.js';
import { Teams1763776600000 } from './1763776600000-Teams.js';
import { Budgets1763776700000 } from './1763776700000-Budgets.js';
import { ProviderKind1763776750000 } from './1763776750000-ProviderKind.js';
import { RequestsApi1763776800000 } from './1763776800000-RequestsApi.js';
import { RequestLogPartialIndexes1763776900000 } from './1763776900000-RequestLogPartialIndexes.js';

/** Every migration, in order. Imported explicitly (no globs) so ESM builds and tests load the same list. */
export const MIGRATIONS = [
  Init1763769600000,
  AuditLog1763769700000,
  Auth1763770000000,
  // new migrations: append below, in timestamp order
  KeyPool1763771000000,
  Adaptive1763772000000,
  RequestLog1763773000000,
  EncryptionKeys1763774700000,
  RequestLogAttempts1763775600000,
  Routes1763775700000,
  Spend1763775800000,
  Webhooks1763776500000,
  Teams1763776600000,
  Budgets1763776700000,
  ProviderKind1763776750000,
  RequestsApi1763776800000,
  RequestLogPartialIndexes1763776900000,
];
