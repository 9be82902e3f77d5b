/**
 * KeyPool's public types: what the Relay, Adaptive and Observability modules see. The service is
 * `KeyPoolService` (key-pool.service.ts); nothing else in src/key-pool is imported from outside.
 */
import type { ScriptValue } from '../state/atomic-store.js';
import type { LocalDb } from '../state/local-db.js';

/** A provider's `pricing` (USD per million tokens per model id or `*` pattern; docs/spend.md). */
export type { ModelPricing, ProviderPricing } from './domain/pricing.js';
/** What API a provider speaks (`openai` | `anthropic`). */
export { PROVIDER_KINDS, type ProviderKind } from './domain/provider-kind.js';
import type { ProviderKind } from './domain/provider-kind.js';

/** A leased upstream key: the right to send ONE request with `apiKey` to `baseUrl`. */
export interface KeyLease {
  leaseId: string;
  keyId: string;
  keyLabel: string;
  providerId: string;
  providerName: string;
  /** What API the provider speaks: how the relay sends the request and reads the answer. */
  providerKind: ProviderKind;
  /** The decrypted upstream key. Never log it, never return it to a client. */
  apiKey: string;
  baseUrl: string;
  /** Extra upstream headers configured on the provider. */
  headers: Record<string, string>;
  timeoutMs: number;
  priority: number;
  /** When the slot was taken (the store's clock, ms since epoch). */
  acquiredAtMs: number;
  /** In-flight requests on this key right after taking the slot (this one included). */
  inFlight: number;
  /** The concurrency limit enforced for this acquisition (null: none). */
  concurrencyLimit: ConcurrencyLimit;
  /** The key's max_tpm when the slot was taken: which TPM window its answer charges (tpmBucketed). */
  maxTpm: number | null;
  /** The key's max_rpm when the slot was taken: which RPM window a request never sent leaves (rpmBucketed). */
  maxRpm: number | null;
}

export type RefusalKind = 'cooling' | 'rate_limited' | 'saturated' | 'no_usable_keys' | 'gate';

/** Why no key was handed out, with the earliest time asking again can succeed. */
export interface KeyRefusal {
  kind: RefusalKind;
  /** Stable machine code: upstream_keys_cooling | upstream_keys_rate_limited | upstream_keys_saturated | no_usable_upstream_keys | the gate's code. */
  code: string;
  message: string;
  /** ms until the first key is ready (0 for no_usable_keys: asking again will not help). */
  retryAfterMs: number;
  providerId: string;
  /** How many usable (enabled, healthy) keys were considered and why each one was blocked. */
  keys: { usable: number; cooling: number; rateLimited: number; saturated: number };
}

export type AcquireResult =
  | { ok: true; lease: KeyLease; /** What the gate's commit returned, if anything. */ gateOutput?: string }
  | { ok: false; refusal: KeyRefusal };

/** What happened to a leased request (the Relay fills it from the upstream response). */
export interface KeyOutcome {
  /** HTTP status from the upstream; omit when no response arrived. */
  status?: number;
  /** Upstream response headers (undici's record or a WHATWG Headers). */
  headers?: Record<string, string | string[] | undefined> | Headers;
  /** Tokens the request consumed (prompt + completion); charged to the key's TPM window. */
  tokens?: number;
  /** Transport-level failure kind, when there was no usable response. */
  error?: 'connect' | 'timeout' | 'aborted' | 'protocol';
  /** true when nothing reached the upstream (the RPM slot is given back). */
  notSent?: boolean;
  /**
   * The upstream's error object (`error.type` / `error.code` / `error.message` of an OpenAI-style
   * error body), when the answer was an error the relay parsed. Adaptive reads it to tell a
   * concurrency 429 from a rate 429.
   */
  upstreamError?: { type?: string | null; code?: string | null; message?: string | null } | null;
}

export interface ReportResult {
  /** Set when this outcome started (or extended) a cooldown. */
  cooldownUntilMs: number | null;
  cooldownSource: string | null;
  /** The key was marked invalid (401/403). */
  invalidated: boolean;
  /** In-flight requests on the key after releasing this one. */
  inFlight: number;
  /** A rider was given and the store ran it (false: none, or the store did not answer). */
  rode?: boolean;
}

/**
 * Per-key concurrency limit, decided by the ConcurrencyPolicy for each acquisition and enforced
 * INSIDE the selection script (a key at its limit is skipped like a key at its RPM).
 * - none: no limit;
 * - fixed: at most `limit` leases in flight;
 * - learned: the limit is read from the key's state hash field `cl` (LEARNED_LIMIT_FIELD) in the
 *   same script, `initial` when the field is absent — Adaptive writes the field with its own script,
 *   so every instance enforces one shared learned value without an extra round trip.
 */
export type ConcurrencyLimit =
  { kind: 'none' } | { kind: 'fixed'; limit: number } | { kind: 'learned'; initial: number };

/** What a policy knows about a candidate key. */
export interface CandidateKeyInfo {
  keyId: string;
  providerId: string;
  priority: number;
  maxRpm: number | null;
  maxTpm: number | null;
  /** The admin's setting: null = adaptive, a number = fixed. */
  maxConcurrent: number | null;
}

/** Adaptive's plug: the limit to enforce for a key. Synchronous and cheap (called on every acquire). */
export interface ConcurrencyPolicy {
  limitFor(key: CandidateKeyInfo): ConcurrencyLimit;
  /**
   * Optional: whether an upstream 429 cools the key down (default yes). Adaptive answers false for a
   * concurrency 429 on an adaptive key: its learned limit is the remedy, not a 60 s rest.
   */
  coolDownOn429?(lease: KeyLease, outcome: KeyOutcome): boolean;
}

/** A key's concurrency setting as Adaptive's admin API and metrics see it (no secrets). */
export interface KeyConcurrencySetting {
  keyId: string;
  label: string;
  providerId: string;
  providerName: string;
  enabled: boolean;
  /** null = adaptive (learned), a number = fixed. */
  maxConcurrent: number | null;
}

/** Called after every report (Adaptive learns from outcomes; Observability counts them). */
export type OutcomeListener = (lease: KeyLease, outcome: KeyOutcome, result: ReportResult) => void;

/**
 * An admission gate composed INTO the selection script (same atomic step, one round trip): e.g. the
 * Relay's provider token bucket and "nobody of higher priority is waiting". `check` runs first and may
 * refuse; `commit` runs only when a key was chosen. Both halves must behave the same (contract-test
 * them). Lua: bodies of `function(GK, GA, now)` / `function(GK, GA, now, keyId)` using redis.call;
 * `check` returns false/nil to pass or `{code, retry_ms}` to refuse.
 */
export interface AdmissionGate {
  /** Unique; part of the composed script's name. */
  name: string;
  checkLua: string;
  commitLua: string;
  check(db: LocalDb, keys: string[], args: string[], nowMs: number): [string, number] | null;
  /**
   * Runs once a key is chosen, with the lease it took (Lua: `keyId, inFlight, leaseId` after `now`).
   * A string it returns (Lua: a string value) comes back with the lease as `gateOutput` (the queue
   * gate hands back the job it popped); anything else is ignored.
   */
  commit(
    db: LocalDb,
    keys: string[],
    args: string[],
    nowMs: number,
    keyId: string,
    inFlight?: number,
    leaseId?: string,
  ): string | null | void;
}

/**
 * A report contribution composed INTO the release script (same atomic step, one round trip per
 * answer), the way an AdmissionGate is composed into the selection script: Adaptive's retreat
 * window and learning step. It runs after the slot is freed and sees the key's in-flight count
 * after the release. Both halves must behave the same (contract-test them). Lua: the body of
 * `function(K, A, ko, ao, na, now, inFlight)` using redis.call, its keys being K[ko + 1]… and its
 * na args A[ao + 1] … A[ao + na] (the release's KEYS/ARGV read in place, not copied); its return
 * value (a table, string or number; nil = nothing) comes back to `settled` as `output`.
 */
export interface ReportContribution {
  /** Unique; part of the composed script's name. */
  name: string;
  lua: string;
  run(db: LocalDb, keys: string[], args: string[], nowMs: number, inFlight: number): ScriptValue;
}

/**
 * Another module's step composed into one report's release script (the relay: the client key's
 * token charge, so an answer costs one store call). `lua` defines `fg_ride(K, A, ko, ao, now)` and
 * runs nothing by itself (its KEYS/ARGV are read in place after the first ko keys / ao args); `run`
 * is its TypeScript twin. Only for a store where the rider's keys and the key pool's share one
 * script (not a Redis Cluster: different hash slots).
 */
export interface ReportRider {
  /** Unique; part of the composed script's name (equal names, equal text). */
  readonly name: string;
  readonly lua: string;
  run(db: LocalDb, keys: string[], args: string[], nowMs: number): void;
}

/** A rider and its logical KEYS/ARGV for one report. */
export interface RiderInput {
  rider: ReportRider;
  keys: string[];
  args: (string | number)[];
}

/** Who contributes to every report (Adaptive): the contribution, its per-answer inputs, its result. */
export interface ReportContributor {
  contribution: ReportContribution;
  /**
   * Synchronous and cheap, called before the release script runs: the contribution's logical
   * KEYS/ARGV for this answer, or null to add nothing (the plain release runs).
   */
  inputs(lease: KeyLease, outcome: KeyOutcome): { keys: string[]; args: (string | number)[] } | null;
  /**
   * Called once after every report for which `inputs` was called (also when it returned null or the
   * store failed; `output` is then null), before the outcome listeners.
   */
  settled(lease: KeyLease, outcome: KeyOutcome, result: ReportResult, output: ScriptValue | null): void;
}

export interface AcquireOptions {
  /** Keys not to use (the Relay's retry on another key). */
  excludeKeyIds?: readonly string[];
  /** Only this key (the Relay's calls about a stored response go to the key that created it). */
  onlyKeyId?: string;
  /** An admission gate and its logical keys/args. */
  gate?: { gate: AdmissionGate; keys: string[]; args: (string | number)[] };
}

/**
 * An acquisition prepared as one step of a larger atomic script (the relay runs it together with
 * the client rate limits: one round trip). `lua` defines `fg_provider(K, A, now[, ko, ao])` and runs
 * nothing by itself; `local` is its twin; `keys`/`args` are its K/A (read in place after the first
 * ko keys / ao args of the tables passed). Exactly one of `finish` (the step's reply
 * came back) or `abandon` (it did not: the store may still run it) must be called.
 */
export interface AcquireStep {
  /** Identifies `lua` (equal names, equal text): a composed script can be cached on it. */
  readonly name: string;
  readonly lua: string;
  local(db: LocalDb, keys: string[], args: string[], nowMs: number): ScriptValue;
  readonly keys: string[];
  readonly args: string[];
  finish(reply: ScriptValue): AcquireResult;
  abandon(): void;
}

/** `prepareAcquire`: a step to run, or the refusal already known without the store. */
export type PreparedAcquire = { step: AcquireStep } | { result: AcquireResult };

/** An enabled provider as the relay routes to it (model → provider) and Adaptive sizes its bucket. */
export interface RoutableProvider {
  id: string;
  name: string;
  kind: ProviderKind;
  models: string[];
  baseUrl: string;
  timeoutMs: number;
  /** Provider-wide requests per minute and burst (null = none). */
  rpm: number | null;
  burst: number | null;
  createdAt: Date;
}

/** A key's derived state for metrics and status pages. */
export interface KeyStateInfo {
  keyId: string;
  label: string;
  providerId: string;
  providerName: string;
  priority: number;
  state: 'active' | 'cooling' | 'disabled' | 'broken' | 'invalid';
  cooldownUntil: Date | null;
  maxRpm: number | null;
  /** null = adaptive, a number = fixed. */
  maxConcurrent: number | null;
}

/** Every configured provider (enabled or not), for status pages. */
export interface ProviderSummary {
  id: string;
  name: string;
  enabled: boolean;
  /** Provider-wide requests per minute and burst (the retreat bucket's base); null = none. */
  rpm: number | null;
  burst: number | null;
}

/** Live counters of one key from the shared store. */
export interface KeyWindow {
  keyId: string;
  /** Requests admitted in the last 60 s (only tracked for keys with max_rpm). */
  requests: number;
  /** Tokens charged in the last 60 s. */
  tokens: number;
  inFlight: number;
  cooldownUntilMs: number | null;
}

// ---- store layout (shared with Adaptive's scripts) -------------------------------------------
// Every key of one provider shares the hash tag {providerId}, so a Redis Cluster keeps them in one slot.

/** Hash with fields lu (LRU sequence), cd (cooldown until, ms), ts (TPM sum), cl (learned concurrency limit). */
export function keyStateKey(providerId: string, keyId: string): string {
  return `kp:{${providerId}}:k:${keyId}`;
}
/** Sorted set of in-flight leases: member leaseId, score = lease expiry (ms). */
export function keyInFlightKey(providerId: string, keyId: string): string {
  return `kp:{${providerId}}:k:${keyId}:inf`;
}
export const LEARNED_LIMIT_FIELD = 'cl';
