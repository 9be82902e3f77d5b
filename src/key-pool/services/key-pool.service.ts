import { Inject, Injectable, Logger, OnApplicationShutdown, OnModuleInit } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import { ApiError } from '../../common/api-error.js';
import type { AppConfig } from '../../config/app-config.js';
import { APP_CONFIG } from '../../config/config.module.js';
import { FloodgateMetrics } from '../../metrics/floodgate-metrics.js';
import { AtomicStore, type AtomicScript, type ScriptValue } from '../../state/atomic-store.js';
import { PubSub, type Unsubscribe } from '../../state/pub-sub.js';
import { KeyCipher, providerKeyAad } from '../domain/key-cipher.js';
import type { ProviderPricing } from '../domain/pricing.js';
import type {
  AcquireOptions,
  AcquireResult,
  AcquireStep,
  AdmissionGate,
  CandidateKeyInfo,
  ConcurrencyLimit,
  ConcurrencyPolicy,
  KeyConcurrencySetting,
  KeyLease,
  KeyOutcome,
  KeyRefusal,
  KeyStateInfo,
  ProviderSummary,
  KeyWindow,
  OutcomeListener,
  PreparedAcquire,
  RefusalKind,
  RoutableProvider,
  ReportContributor,
  ReportRider,
  ReportResult,
  RiderInput,
} from '../key-pool.types.js';
import {
  allKeyNames,
  clearKeyStateScript,
  composeLeaseInputs,
  decodeSelection,
  keyNames,
  providerLua,
  releaseLateScript,
  renewScript,
  selectionInputs,
  selectionScript,
  snapshotScript,
  type SelectionCandidate,
  type SelectionResult,
} from '../infrastructure/key-selection.script.js';
import {
  decodeRelease,
  encodeRelease,
  encodeReleaseBatch,
  mergeReleases,
  releaseScript,
  type ReleaseResult,
  type ReleaseScript,
} from '../infrastructure/release.script.js';
import { ReleaseBatcher } from '../infrastructure/release-batcher.js';
import { rpmBucketed, tpmBucketed } from '../infrastructure/window-buckets.js';
import { valueIsBad } from '../infrastructure/encryption-key-registry.js';
import { KeyUsageRecorder } from '../infrastructure/key-usage.recorder.js';
import { keyState, type ProviderKey } from '../infrastructure/provider-key.entity.js';
import { ProviderKeyRepository } from '../infrastructure/provider-key.repository.js';
import type { Provider } from '../infrastructure/provider.entity.js';
import { ProviderRepository, type TransactionManager } from '../infrastructure/provider.repository.js';
import { cooldownFor429 } from '../domain/upstream-headers.js';

/** Candidate keys of one provider: static configuration + decrypted values, cached in process. */
interface ProviderEntry {
  provider: Provider;
  candidates: Candidate[];
  unusable: { disabled: number; broken: number; invalid: number };
}

/** An acquisition's selection part without its lease id (KeyPoolService.preparedSelection). */
interface PreparedSelection {
  selection: readonly SelectionCandidate[];
  keys: readonly string[];
  tail: readonly string[];
}

function sameLimit(a: ConcurrencyLimit, b: ConcurrencyLimit): boolean {
  if (a.kind !== b.kind) return false;
  if (a.kind === 'fixed') return a.limit === (b as { limit: number }).limit;
  if (a.kind === 'learned') return a.initial === (b as { initial: number }).initial;
  return true;
}

interface Candidate {
  info: CandidateKeyInfo;
  label: string;
  apiKey: string;
  dbCooldownUntilMs: number;
}

export const INVALIDATE_CHANNEL = 'keypool:invalidate';

/**
 * A lease this instance may still hold in the store without anybody using it: an acquisition whose
 * answer never came back (the store may have run it — a frozen Redis runs everything it was sent
 * once it thaws) or a release that failed. Any of `keyIds` may hold it.
 */
interface UnconfirmedLease {
  providerId: string;
  providerName: string;
  keyIds: string[];
  /** The request never went upstream: its RPM entry goes too. */
  notSent: boolean;
  sinceMs: number;
}

/** How often the ledger of unconfirmed leases is retried while it is not empty. */
const RECONCILE_EVERY_MS = 250;
/** The ledger's bound (oldest entries go first; they expire by themselves within the lease TTL). */
const UNCONFIRMED_MAX = 50_000;

/** Admin's max_concurrent as a fixed limit; null = no limit (until Adaptive installs its policy). */
export const DEFAULT_CONCURRENCY_POLICY: ConcurrencyPolicy = {
  limitFor: (key) =>
    key.maxConcurrent !== null ? { kind: 'fixed', limit: key.maxConcurrent } : { kind: 'none' },
};

const REFUSAL_CODES: Record<Exclude<RefusalKind, 'gate'>, string> = {
  cooling: 'upstream_keys_cooling',
  rate_limited: 'upstream_keys_rate_limited',
  saturated: 'upstream_keys_saturated',
  no_usable_keys: 'no_usable_upstream_keys',
};

/**
 * The key pool the Relay calls: `acquire(providerId)` hands out a lease on the best upstream key
 * (one atomic store step: filter, pick, reserve), `report(lease, outcome)` charges tokens, applies
 * 429 cooldowns / 401-403 invalidation and frees the concurrency slot.
 *
 * Extension points: `useConcurrencyPolicy` (Adaptive: per-key limits enforced inside the selection
 * script), `useReportContributor` (Adaptive: a step composed into the release script — retreat
 * window, learning — so an answer costs one store round trip), `onOutcome` (listeners for every
 * report), `acquire(…, { gate })` (an admission gate composed into the same script: retreat bucket,
 * priority waiters).
 */
@Injectable()
export class KeyPoolService implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger('KeyPool');
  private readonly cache = new Map<string, Promise<ProviderEntry | null>>();
  private routable: Promise<RoutableProvider[]> | null = null;
  /** keyId → decrypted value of every key this instance has loaded (for `rehydrate`, which is synchronous). */
  private readonly secrets = new Map<string, { providerId: string; apiKey: string }>();
  private policy: ConcurrencyPolicy = DEFAULT_CONCURRENCY_POLICY;
  private readonly listeners = new Set<OutcomeListener>();
  private readonly reported = new WeakSet<KeyLease>();
  private readonly scripts = new Map<string, AtomicScript<SelectionResult>>();
  /** Per candidate list (ProviderEntry.candidates): its selection part (preparedSelection). */
  private readonly preparedSelections = new WeakMap<readonly Candidate[], PreparedSelection>();
  private readonly baseScript = selectionScript(null);
  private contributor: ReportContributor | null = null;
  private readonly plainRelease = releaseScript(null);
  private contributedRelease: ReleaseScript | null = null;
  /** Release scripts with a rider, by contribution and rider name. */
  private readonly ridden = new Map<string, ReleaseScript>();
  /** The answer path's releases, coalesced per instance while one is in flight (ReleaseBatcher). */
  private readonly releases: ReleaseBatcher;
  /** Leases whose release waits for the call in flight → what runs once it is sent (`afterReleaseSent`). */
  private readonly unsent = new WeakMap<KeyLease, (() => void)[]>();
  /** ADMISSION_GRANTS: where a grant unit's release may wait for its grant's flush (AdmissionGrants). */
  private releaseSink: ReleaseSinkFor | null = null;
  private unsubscribe: Unsubscribe | undefined;
  /** Called whenever the provider caches are dropped (an admin write here, or one published by another instance). */
  private readonly dropListeners = new Set<(providerId: string) => Promise<void> | void>();
  /** leaseId → lease this instance could not confirm released (retried until the store answers). */
  private readonly unconfirmed = new Map<string, UnconfirmedLease>();
  private reconcileTimer: NodeJS.Timeout | undefined;
  private reconciling: Promise<void> | null = null;
  private readonly leaseTtlMs: number;
  private readonly hashTtlMs: number;

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly providers: ProviderRepository,
    private readonly keys: ProviderKeyRepository,
    @Inject(AtomicStore) private readonly store: AtomicStore,
    @Inject(PubSub) private readonly pubsub: PubSub,
    private readonly cipher: KeyCipher,
    private readonly usageRecorder: KeyUsageRecorder,
    private readonly metrics: FloodgateMetrics,
  ) {
    this.leaseTtlMs = config.keyPool.leaseTtlSeconds * 1000;
    this.hashTtlMs = Math.max(86_400_000, (config.keyPool.cooldownMaxSeconds + 120) * 1000);
    this.releases = new ReleaseBatcher(store);
  }

  async onModuleInit(): Promise<void> {
    this.unsubscribe = await this.pubsub.subscribe(INVALIDATE_CHANNEL, (providerId) => {
      void Promise.all(this.dropCache(providerId));
    });
    // Invalidations published while this instance's pub/sub connection was down were missed.
    this.pubsub.onResubscribed(() => void Promise.all(this.dropCache('*')));
  }

  async onApplicationShutdown(): Promise<void> {
    await this.unsubscribe?.();
    if (this.unconfirmed.size > 0) await this.reconcile();
    clearInterval(this.reconcileTimer);
    this.reconcileTimer = undefined;
  }

  // ---- extension points ------------------------------------------------------------------

  /** Adaptive installs its policy here (one policy; the last call wins). */
  useConcurrencyPolicy(policy: ConcurrencyPolicy): void {
    this.policy = policy;
  }

  /**
   * Adaptive composes its per-answer step into the release script here (one contributor; the last
   * call wins; null removes it). Its `inputs` runs before every report's script, `settled` after it.
   */
  useReportContributor(contributor: ReportContributor | null): void {
    this.contributor = contributor;
    this.contributedRelease = contributor ? releaseScript(contributor.contribution) : null;
  }

  /** The release script with a rider (and the contribution when `contributed`), built once per pair. */
  private riddenRelease(contributed: boolean, rider: ReportRider): ReleaseScript {
    const contribution = contributed ? (this.contributor?.contribution ?? null) : null;
    const name = `${contribution?.name ?? ''}|${rider.name}`;
    let script = this.ridden.get(name);
    if (!script) {
      script = releaseScript(contribution, rider);
      this.ridden.set(name, script);
    }
    return script;
  }

  /**
   * Runs `fn` once the lease's release has been written to the store connection: at once when it
   * was (or there is none), else when the release call in flight returns and the batch it waits
   * in goes (ReleaseBatcher) — so a step that must reach the store after the release (the
   * dispatcher's hand-off of the freed slot) is sent right behind it, never ahead of it.
   */
  afterReleaseSent(lease: KeyLease, fn: () => void): void {
    const after = this.unsent.get(lease);
    if (after) after.push(fn);
    else fn();
  }

  /** Listen to every report (returns a function that removes the listener). */
  onOutcome(listener: OutcomeListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  // ---- acquire / report ---------------------------------------------------------------------

  /** Picks and reserves an upstream key of the provider, or says why not and when to ask again. */
  async acquire(providerId: string, options: AcquireOptions = {}): Promise<AcquireResult> {
    const prepared = await this.prepareAcquire(providerId, options);
    if ('result' in prepared) return prepared.result;
    const { step } = prepared;
    const script = options.gate ? this.scriptWithGate(options.gate.gate) : this.baseScript;
    let reply: SelectionResult;
    try {
      reply = await this.store.run(script, step.keys, step.args);
    } catch (err) {
      // The store may still run it (a command that timed out on a frozen Redis runs when it thaws),
      // leaving a lease nobody holds: released as soon as the store answers again.
      step.abandon();
      throw err;
    }
    return step.finish(reply);
  }

  /**
   * `acquire` as a step another atomic script includes (the relay's combined admission: client
   * limits + gates + selection in one round trip). A refusal known without the store (unknown or
   * disabled provider, no usable keys) comes back as `result`.
   */
  async prepareAcquire(providerId: string, options: AcquireOptions = {}): Promise<PreparedAcquire> {
    const entry = await this.entry(providerId);
    if (!entry)
      return {
        result: this.refuse(
          providerId,
          providerId,
          'no_usable_keys',
          0,
          0,
          [0, 0, 0],
          `provider ${providerId} does not exist`,
        ),
      };
    const name = entry.provider.name;
    if (!entry.provider.enabled) {
      return {
        result: this.refuse(
          providerId,
          name,
          'no_usable_keys',
          0,
          0,
          [0, 0, 0],
          `provider ${name} is disabled`,
        ),
      };
    }
    const exclude = options.excludeKeyIds?.length ? new Set(options.excludeKeyIds) : null;
    const only = options.onlyKeyId;
    const candidates =
      exclude || only !== undefined
        ? entry.candidates.filter(
            (c) => !exclude?.has(c.info.keyId) && (only === undefined || c.info.keyId === only),
          )
        : entry.candidates;
    if (candidates.length === 0) {
      const u = entry.unusable;
      const why = [
        u.disabled ? `${u.disabled} disabled` : '',
        u.broken ? `${u.broken} broken` : '',
        u.invalid ? `${u.invalid} invalid` : '',
        exclude ? `${entry.candidates.length} excluded` : '',
        only !== undefined ? `key ${only} not usable` : '',
      ].filter(Boolean);
      return {
        result: this.refuse(
          providerId,
          name,
          'no_usable_keys',
          0,
          0,
          [0, 0, 0],
          `provider ${name} has no usable keys${why.length ? ` (${why.join(', ')})` : ''}`,
        ),
      };
    }

    const leaseId = randomUUID();
    const prepared = this.preparedSelection(providerId, candidates, candidates === entry.candidates);
    const selection = prepared.selection;
    const inputs = composeLeaseInputs(
      options.gate ? { keys: options.gate.keys, args: options.gate.args } : null,
      prepared.keys,
      leaseId,
      prepared.tail,
    );
    const script = options.gate ? this.scriptWithGate(options.gate.gate) : this.baseScript;
    const gate = options.gate?.gate ?? null;
    const step: AcquireStep = {
      name: script.name,
      lua: providerLua(gate),
      local: (db, keys, args, nowMs) => script.local(db, keys, args, nowMs),
      keys: inputs.keys,
      args: inputs.args,
      abandon: () =>
        this.unconfirmedLease(leaseId, {
          providerId,
          providerName: name,
          keyIds: candidates.map((c) => c.info.keyId),
          notSent: true,
          sinceMs: Date.now(),
        }),
      finish: (reply) => {
        const r = decodeSelection(reply);
        if (r[0] === 1) {
          const chosen = candidates[r[1] - 1]!;
          const lease = this.leaseOf(entry, chosen, leaseId, r[3], r[2], selection[r[1] - 1]!.concurrency);
          return r.length === 5 ? { ok: true, lease, gateOutput: r[4] } : { ok: true, lease };
        }
        const [, kind, retryMs, nCool, nRate, nBusy] = r;
        return this.refuse(providerId, name, kind, retryMs, candidates.length, [nCool, nRate, nBusy]);
      },
    };
    return { step };
  }

  /**
   * The selection part of an acquisition for `candidates`: the candidates as the script reads them,
   * their KEYS, and their ARGV after the lease id. Everything but the lease id is the same from one
   * request to the next while the provider's keys and their concurrency limits stay as they are, so
   * for the provider's full candidate list (`reuse`) it is kept (per candidate list: a reload of the
   * provider makes a new one) and rebuilt only when a limit (or a DB cooldown) changed.
   */
  private preparedSelection(
    providerId: string,
    candidates: readonly Candidate[],
    reuse: boolean,
  ): PreparedSelection {
    const kept = reuse ? this.preparedSelections.get(candidates) : undefined;
    if (kept !== undefined) {
      let same = true;
      for (let i = 0; same && i < candidates.length; i++) {
        const c = candidates[i]!;
        const was = kept.selection[i]!;
        same =
          was.dbCooldownUntilMs === c.dbCooldownUntilMs &&
          sameLimit(was.concurrency, this.policy.limitFor(c.info));
      }
      if (same) return kept;
    }
    const selection: SelectionCandidate[] = candidates.map((c) => ({
      keyId: c.info.keyId,
      priority: c.info.priority,
      maxRpm: c.info.maxRpm,
      maxTpm: c.info.maxTpm,
      concurrency: this.policy.limitFor(c.info),
      dbCooldownUntilMs: c.dbCooldownUntilMs,
    }));
    const { keys, args } = selectionInputs(providerId, selection, '', this.leaseTtlMs, this.hashTtlMs);
    const prepared: PreparedSelection = { selection, keys, tail: args.slice(1) };
    if (reuse) this.preparedSelections.set(candidates, prepared);
    return prepared;
  }

  /**
   * A lease another instance's admission step took for this one (the relay's dispatcher: a grant
   * published by the store script that took the slot), made whole from this instance's own view of
   * the provider. null when this instance does not know the key (the slot is then given back).
   */
  async leaseFromGrant(
    providerId: string,
    grant: { keyId: string; leaseId: string; at: number; inFlight: number },
  ): Promise<KeyLease | null> {
    const entry = await this.entry(providerId);
    const chosen = entry?.candidates.find((c) => c.info.keyId === grant.keyId);
    if (entry && chosen) return this.leaseOf(entry, chosen, grant.leaseId, grant.at, grant.inFlight);
    // Unknown here (disabled or removed meanwhile): the slot goes back at once.
    await this.store
      .run(
        releaseLateScript,
        keyNames(providerId, grant.keyId).filter((_, i) => i === 1 || i === 3),
        [grant.leaseId, 1],
      )
      .catch(() => undefined);
    return null;
  }

  private leaseOf(
    entry: ProviderEntry,
    chosen: Candidate,
    leaseId: string,
    acquiredAtMs: number,
    inFlight: number,
    limit: ConcurrencyLimit = this.policy.limitFor(chosen.info),
  ): KeyLease {
    return new Lease(
      {
        leaseId,
        keyId: chosen.info.keyId,
        keyLabel: chosen.label,
        providerId: entry.provider.id,
        providerName: entry.provider.name,
        providerKind: entry.provider.kind ?? 'openai',
        baseUrl: entry.provider.baseUrl,
        headers: { ...entry.provider.headers },
        timeoutMs: entry.provider.timeoutMs,
        priority: chosen.info.priority,
        acquiredAtMs,
        inFlight,
        concurrencyLimit: limit,
        maxTpm: chosen.info.maxTpm,
        maxRpm: chosen.info.maxRpm,
      },
      chosen.apiKey,
    );
  }

  private refuse(
    providerId: string,
    name: string,
    rawKind: string,
    retryMs: number,
    usable: number,
    [cooling, rateLimited, saturated]: [number, number, number],
    message?: string,
  ): AcquireResult {
    const retryAfterMs = Math.max(0, Math.ceil(retryMs));
    const seconds = Math.max(1, Math.ceil(retryAfterMs / 1000));
    let kind: RefusalKind;
    let code: string;
    if (rawKind.startsWith('gate:')) {
      kind = 'gate';
      code = rawKind.slice(5);
      message ??= `provider ${name} admission refused (${code}); retry in ${seconds} s`;
    } else {
      kind = rawKind as Exclude<RefusalKind, 'gate'>;
      code = REFUSAL_CODES[kind as Exclude<RefusalKind, 'gate'>] ?? 'no_usable_upstream_keys';
      message ??= refusalMessage(kind, name, usable, { cooling, rateLimited, saturated }, seconds);
    }
    const refusal: KeyRefusal = {
      kind,
      code,
      message,
      retryAfterMs,
      providerId,
      keys: { usable, cooling, rateLimited, saturated },
    };
    return { ok: false, refusal };
  }

  private scriptWithGate(gate: AdmissionGate): AtomicScript<SelectionResult> {
    let script = this.scripts.get(gate.name);
    if (!script) {
      script = selectionScript(gate);
      this.scripts.set(gate.name, script);
    }
    return script;
  }

  /**
   * Reports what happened to a leased request. Idempotent per lease. Never throws for storage
   * trouble (the lease then simply expires after KEY_LEASE_TTL_SECONDS).
   */
  async report(lease: KeyLease, outcome: KeyOutcome, rider: RiderInput | null = null): Promise<ReportResult> {
    const result: ReportResult = {
      cooldownUntilMs: null,
      cooldownSource: null,
      invalidated: false,
      inFlight: 0,
    };
    if (this.reported.has(lease)) return result;
    this.reported.add(lease);
    const status = outcome.status;
    const tokens = Math.max(0, Math.floor(outcome.tokens ?? 0));
    let cooldownMs = 0;
    if (status === 429 && this.policy.coolDownOn429?.(lease, outcome) !== false) {
      const decision = cooldownFor429(outcome.headers, Date.now(), {
        defaultMs: this.config.keyPool.cooldownDefaultSeconds * 1000,
        maxMs: this.config.keyPool.cooldownMaxSeconds * 1000,
      });
      cooldownMs = decision.ms;
      result.cooldownSource = decision.source;
    }
    let nowMs = Date.now();
    const contributor = this.contributor;
    /** The release waits for its local grant's flush (ADMISSION_GRANTS): settled when it answers. */
    let deferred = false;
    let extra: { keys: string[]; args: (string | number)[] } | null = null;
    let output: ScriptValue | null = null;
    if (contributor) {
      try {
        extra = contributor.inputs(lease, outcome);
      } catch (err) {
        this.logger.error({ err }, 'a report contributor failed');
      }
    }
    try {
      const input = encodeRelease({
        providerId: lease.providerId,
        keyId: lease.keyId,
        leaseId: lease.leaseId,
        tokens,
        cooldownMs,
        notSent: outcome.notSent === true,
        hashTtlMs: this.hashTtlMs,
        tpmBuckets: tpmBucketed(lease.maxTpm),
        rpmBuckets: rpmBucketed(lease.maxRpm) ? { acquiredAtMs: lease.acquiredAtMs } : null,
        contribution: extra,
        rider: rider && !this.store.slotted ? rider : null,
      });
      const contributed = !!extra && this.contributedRelease !== null;
      const script =
        rider && !this.store.slotted
          ? this.riddenRelease(contributed, rider.rider)
          : contributed
            ? this.contributedRelease!
            : this.plainRelease;
      const sink = this.releaseSink?.(
        lease,
        cooldownMs === 0 && status !== undefined && status < 400 && !outcome.error && !outcome.notSent,
      );
      if (sink) {
        // a local grant's unit: the release waits for its grant's flush (one batch call); what
        // follows the store's answer (Adaptive's settlement) runs then
        deferred = true;
        new Promise<ScriptValue>((resolve, reject) =>
          sink({ script, keys: input.keys, args: input.args, resolve, reject }),
        ).then(
          (answer) => {
            try {
              const r = decodeRelease(answer as ReleaseResult);
              contributor?.settled(lease, outcome, { ...result, inFlight: r.inFlight }, r.contribution);
            } catch (err) {
              this.logger.error({ err }, 'a report contributor failed');
            }
          },
          (err: unknown) => {
            this.logger.error(
              { err, key_id: lease.keyId },
              'a deferred release failed; the lease is released as soon as the store answers',
            );
            this.unconfirmedLease(lease.leaseId, {
              providerId: lease.providerId,
              providerName: lease.providerName,
              keyIds: [lease.keyId],
              notSent: false,
              sinceMs: Date.now(),
            });
            try {
              contributor?.settled(lease, outcome, result, null);
            } catch (e) {
              this.logger.error({ err: e }, 'a report contributor failed');
            }
          },
        );
        if (rider && !this.store.slotted) result.rode = true;
        result.inFlight = lease.inFlight;
      } else {
        const sending = this.releases.run(script, input.keys, input.args, () => {
          const after = this.unsent.get(lease);
          this.unsent.delete(lease);
          for (const fn of after ?? []) fn();
        });
        if (sending.queued) this.unsent.set(lease, []);
        const answer = await sending.reply;
        // Everything behind the store's answer (Adaptive's report, usage, the caller's settlement and
        // accounting) waits for the event loop's check phase: at c=1 the answer is often read in the
        // same poll as the next request's admission answer, whose upstream request undici writes in
        // that check phase (it yields one turn before reusing an idle socket); run first, this
        // bookkeeping held that write back (docs/performance.md "Issue 14: added latency at c=1").
        await new Promise((resolve) => setImmediate(resolve));
        const r = decodeRelease(answer);
        if (rider && !this.store.slotted) result.rode = true;
        result.inFlight = r.inFlight;
        nowMs = r.nowMs;
        output = r.contribution;
        if (r.cooldownUntilMs > 0) result.cooldownUntilMs = r.cooldownUntilMs;
      }
    } catch (err) {
      this.logger.error(
        { err, key_id: lease.keyId },
        'reporting to the key store failed; the lease is released as soon as the store answers',
      );
      this.unconfirmedLease(lease.leaseId, {
        providerId: lease.providerId,
        providerName: lease.providerName,
        keyIds: [lease.keyId],
        notSent: outcome.notSent === true,
        sinceMs: Date.now(),
      });
      if (cooldownMs > 0) result.cooldownUntilMs = Date.now() + cooldownMs;
    }
    if (contributor && !deferred) {
      try {
        contributor.settled(lease, outcome, result, output);
      } catch (err) {
        this.logger.error({ err }, 'a report contributor failed');
      }
    }

    this.usageRecorder.record(lease.keyId, nowMs, {
      requests: outcome.notSent ? 0 : 1,
      tokens,
      rateLimited: status === 429 ? 1 : 0,
      errors: outcome.error || (status !== undefined && status >= 500) ? 1 : 0,
    });

    if (result.cooldownUntilMs !== null) {
      this.logger.warn(
        `upstream key "${lease.keyLabel}" (${lease.keyId}) of provider ${lease.providerName} answered 429: cooling down for ${Math.ceil(cooldownMs / 1000)} s (${result.cooldownSource})`,
      );
      await this.keys
        .persistCooldown(lease.keyId, new Date(result.cooldownUntilMs))
        .catch((err: unknown) =>
          this.logger.error({ err, key_id: lease.keyId }, 'persisting a cooldown failed'),
        );
    }
    if (status === 401 || status === 403) {
      result.invalidated = true;
      const changed = await this.keys.markKeyInvalid(lease.keyId).catch((err: unknown) => {
        this.logger.error({ err, key_id: lease.keyId }, 'marking a key invalid failed');
        return false;
      });
      if (changed) {
        this.logger.warn(
          `upstream key "${lease.keyLabel}" (${lease.keyId}) of provider ${lease.providerName} was refused by the upstream (HTTP ${status}); marked invalid until an admin re-enables it`,
        );
      }
      await this.invalidate(lease.providerId);
    }
    for (const listener of this.listeners) {
      try {
        listener(lease, outcome, result);
      } catch (err) {
        this.logger.error({ err }, 'a key outcome listener failed');
      }
    }
    return result;
  }

  // ---- leases the store could not confirm ---------------------------------------------------

  private unconfirmedLease(leaseId: string, entry: UnconfirmedLease): void {
    this.unconfirmed.delete(leaseId);
    this.unconfirmed.set(leaseId, entry);
    while (this.unconfirmed.size > UNCONFIRMED_MAX) {
      this.unconfirmed.delete(this.unconfirmed.keys().next().value!);
    }
    if (!this.reconcileTimer) {
      this.reconcileTimer = setInterval(() => void this.reconcile(), RECONCILE_EVERY_MS);
      this.reconcileTimer.unref();
    }
  }

  /** Leases this instance still has to confirm released (for status and tests). */
  get unconfirmedLeases(): number {
    return this.unconfirmed.size;
  }

  /**
   * Releases every lease of the ledger (one script per provider); an entry stays until the store
   * confirms it, or until the lease TTL has passed (it expired by itself). Leases that were still
   * held are "released late": logged in one line and counted
   * (floodgate_upstream_key_leases_released_late_total).
   */
  reconcile(): Promise<void> {
    this.reconciling ??= this.doReconcile().finally(() => (this.reconciling = null));
    return this.reconciling;
  }

  private async doReconcile(): Promise<void> {
    const expiredBefore = Date.now() - this.leaseTtlMs - 1000;
    const byProvider = new Map<string, [string, UnconfirmedLease][]>();
    for (const [leaseId, e] of this.unconfirmed) {
      if (e.sinceMs < expiredBefore) {
        this.unconfirmed.delete(leaseId);
        continue;
      }
      const list = byProvider.get(e.providerId) ?? [];
      list.push([leaseId, e]);
      byProvider.set(e.providerId, list);
    }
    const freed = new Map<string, number>();
    for (const [providerId, entries] of byProvider) {
      // Bounded batches: a long outage may have piled up thousands.
      for (let i = 0; i < entries.length; i += 500) {
        const batch = entries.slice(i, i + 500);
        const keys: string[] = [];
        const args: string[] = [];
        for (const [leaseId, e] of batch) {
          for (const keyId of e.keyIds) {
            const [, rpm, , inf] = keyNames(providerId, keyId);
            keys.push(rpm, inf);
            args.push(leaseId, e.notSent ? '1' : '0');
          }
        }
        let n: number;
        try {
          n = await this.store.run(releaseLateScript, keys, args);
        } catch {
          break; // still unreachable: the next round retries
        }
        for (const [leaseId] of batch) this.unconfirmed.delete(leaseId);
        const name = batch[0]![1].providerName;
        if (n > 0) freed.set(name, (freed.get(name) ?? 0) + n);
      }
    }
    if (this.unconfirmed.size === 0) {
      clearInterval(this.reconcileTimer);
      this.reconcileTimer = undefined;
    }
    if (freed.size === 0) return;
    let total = 0;
    for (const [provider, n] of freed) {
      this.metrics.leasesReleasedLate.inc({ provider }, n);
      total += n;
    }
    this.logger.warn(
      `${total} upstream-key ${plural(total, 'lease', 'leases')} released late (${[...freed].map(([p, n]) => `${p}: ${n}`).join(', ')}): the store had not answered their acquisition or release; their slots are free again`,
    );
  }

  /**
   * A lease that travelled between instances as JSON (the relay's dispatcher grants across
   * instances; `apiKey` is not enumerable, so it never leaves the process) made whole again with the
   * decrypted value this instance holds. null when this instance does not know the key.
   */
  rehydrate(lease: Omit<KeyLease, 'apiKey'> | Record<string, unknown>): KeyLease | null {
    const { keyId, providerId, leaseId } = lease as Partial<KeyLease>;
    if (typeof keyId !== 'string' || typeof providerId !== 'string' || typeof leaseId !== 'string')
      return null;
    const secret = this.secrets.get(keyId);
    if (!secret || secret.providerId !== providerId) return null;
    const { apiKey: _ignored, ...rest } = lease as KeyLease;
    return new Lease(rest, secret.apiKey);
  }

  /** Extends a lease's concurrency slot (long streams). false: the lease is gone (expired or released). */
  async renew(lease: KeyLease, ttlMs = this.leaseTtlMs): Promise<boolean> {
    const [, , , inf] = keyNames(lease.providerId, lease.keyId);
    return (await this.store.run(renewScript, [inf], [lease.leaseId, ttlMs])) === 1;
  }

  // ---- reads for admin, Adaptive, Observability ---------------------------------------------

  /**
   * Enabled providers for routing (cached in process; dropped on every admin write here and, via
   * pub/sub, on every instance).
   */
  routableProviders(): Promise<RoutableProvider[]> {
    if (!this.routable) {
      const p = this.providers.enabledProviders().then((rows) =>
        rows.map((r) => ({
          id: r.id,
          name: r.name,
          kind: r.kind ?? 'openai',
          models: [...r.models],
          baseUrl: r.baseUrl,
          timeoutMs: r.timeoutMs,
          rpm: r.rpm,
          burst: r.burst,
          createdAt: r.createdAt,
        })),
      );
      this.routable = p;
      p.catch(() => {
        if (this.routable === p) this.routable = null;
      });
    }
    return this.routable;
  }

  /**
   * Every provider's `pricing` (USD per million tokens per model id or pattern), enabled or not: one
   * Postgres query. Callers cache it and refresh on `onCacheDrop` (the Spend module's PriceService).
   */
  async providerPricing(): Promise<Map<string, ProviderPricing>> {
    const rows = await this.providers.pricingOfAll();
    return new Map(rows.map((r) => [r.id, r.pricing ?? {}]));
  }

  /**
   * Registers a listener run whenever this instance drops its provider caches: after an admin write
   * here (`invalidate` awaits it, so a write's answer comes after the listener's refresh) and when
   * another instance publishes one. Returns the unregister function.
   */
  onCacheDrop(listener: (providerId: string) => Promise<void> | void): () => void {
    this.dropListeners.add(listener);
    return () => this.dropListeners.delete(listener);
  }

  /**
   * A unit of a local admission grant (ADMISSION_GRANTS): the block's lease as another request's,
   * under the unit's own lease id (its own in-flight member and RPM entry, reserved by the block).
   */
  unitLease(block: KeyLease, leaseId: string): KeyLease {
    const { apiKey, ...fields } = block;
    return new Lease({ ...fields, headers: { ...block.headers }, leaseId }, apiKey);
  }

  /** The store names of an upstream key's RPM window and in-flight set (a grant's give-back). */
  grantKeyNames(lease: KeyLease): { rpm: string; inf: string; rpmKind: 'e' | 'b' | 'n' } {
    const bucketed = rpmBucketed(lease.maxRpm);
    const [, rpm, , inf] = keyNames(lease.providerId, lease.keyId, false, bucketed);
    return { rpm, inf, rpmKind: !lease.maxRpm ? 'n' : bucketed ? 'b' : 'e' };
  }

  /**
   * ADMISSION_GRANTS (the relay's AdmissionGrants): `sink(lease, deferrable)` is asked on every
   * report; for a unit of a live local grant whose answer was plain (`deferrable`: an answer below
   * 400, no cooldown, no error) it may return where the release waits — sent with its grant's
   * flush (`sendDeferred`), in one batch call — and the report then answers at once.
   */
  useReleaseSink(sink: ReleaseSinkFor | null): void {
    this.releaseSink = sink;
  }

  /**
   * Sends a local grant's deferred releases (ReleaseSinkFor): merged into ONE release where they can
   * be (mergeReleases: the tokens summed, the one contribution kept), the rest as batch calls
   * grouped by script. Returns the lease ids of merged releases whose in-flight member the merged
   * call did not remove: the grant's give-back removes them.
   */
  sendDeferred(list: readonly DeferredRelease[]): string[] {
    if (list.length > 1) {
      const x = list.find((d) => d.args[7] !== '0') ?? list[0]!;
      const together = [x, ...list.filter((d) => d !== x && d.args[7] === '0')];
      const merged = together.length > 1 ? mergeReleases(together) : null;
      if (merged) {
        this.store.run(x.script, merged.keys, merged.args).then(
          (reply) => {
            x.resolve(reply);
            for (const d of together) if (d !== x) d.resolve([reply[0], reply[1], reply[2]]);
          },
          (err: unknown) => {
            const e = err instanceof Error ? err : new Error(String(err));
            for (const d of together) d.reject(e);
          },
        );
        this.sendBatched(list.filter((d) => !together.includes(d)));
        return together.filter((d) => d !== x).map((d) => d.args[0]!);
      }
    }
    this.sendBatched(list);
    return [];
  }

  private sendBatched(list: readonly DeferredRelease[]): void {
    const lanes = new Map<string, DeferredRelease[]>();
    for (const d of list) {
      const lane = lanes.get(d.script.name);
      if (lane) lane.push(d);
      else lanes.set(d.script.name, [d]);
    }
    for (const lane of lanes.values()) {
      for (let i = 0; i < lane.length; i += 64) {
        const part = lane.slice(i, i + 64);
        if (part.length === 1) {
          const only = part[0]!;
          this.store.run(only.script, only.keys, only.args).then(only.resolve, only.reject);
          continue;
        }
        const input = encodeReleaseBatch(part);
        this.store.run(part[0]!.script.batch, input.keys, input.args).then(
          (out) =>
            part.forEach((d, j) => {
              const r = out[j];
              if (Array.isArray(r)) d.resolve(r);
              else d.reject(new Error(typeof r === 'string' ? r : 'the batched release returned no reply'));
            }),
          (err: unknown) => {
            const e = err instanceof Error ? err : new Error(String(err));
            for (const d of part) d.reject(e);
          },
        );
      }
    }
  }

  /** Live window counters of the given keys (one store round trip). */
  async windows(providerId: string, keyIds: readonly string[]): Promise<KeyWindow[]> {
    if (keyIds.length === 0) return [];
    const flat = await this.store.run(
      snapshotScript,
      keyIds.flatMap((id) => allKeyNames(providerId, id)),
      [],
    );
    return keyIds.map((keyId, i) => ({
      keyId,
      requests: flat[i * 4]!,
      tokens: flat[i * 4 + 1]!,
      inFlight: flat[i * 4 + 2]!,
      cooldownUntilMs: flat[i * 4 + 3]! > 0 ? flat[i * 4 + 3]! : null,
    }));
  }

  /**
   * Every key's derived state (for metrics and status pages: broken and invalid keys show up here).
   * One Postgres query; no secrets.
   */
  async keyStates(): Promise<KeyStateInfo[]> {
    const rows = await this.keys.keyStates();
    return rows.map((r) => ({
      keyId: r.id,
      label: r.label,
      providerId: r.provider_id,
      providerName: r.provider_name,
      priority: r.priority,
      state: keyState({
        enabled: r.enabled,
        brokenAt: r.broken_at,
        invalidAt: r.invalid_at,
        cooldownUntil: r.cooldown_until,
      }),
      cooldownUntil: r.cooldown_until ? new Date(r.cooldown_until) : null,
      maxRpm: r.max_rpm,
      maxConcurrent: r.max_concurrent,
    }));
  }

  /** Every configured provider, enabled or not, by name. */
  async providerSummaries(): Promise<ProviderSummary[]> {
    const rows = await this.providers.allByName();
    return rows.map((p) => ({ id: p.id, name: p.name, enabled: p.enabled, rpm: p.rpm, burst: p.burst }));
  }

  /** Every upstream key's concurrency setting, optionally of one provider or one key (Adaptive's admin API and metrics). One query, no secrets. */
  async concurrencySettings(
    filter: { providerId?: string; keyId?: string } = {},
  ): Promise<KeyConcurrencySetting[]> {
    const rows = await this.keys.concurrencySettings(filter);
    return rows.map((r) => ({
      keyId: r.id,
      label: r.label,
      providerId: r.provider_id,
      providerName: r.provider_name,
      enabled: r.enabled,
      maxConcurrent: r.max_concurrent,
    }));
  }

  /**
   * Sets a key's max_concurrent (null = adaptive, a number = fixed) within the caller's transaction
   * (the caller writes its audit row in it and calls invalidate(providerId) after the commit).
   * Returns the previous value, or null when the key does not exist. (Adaptive's mode/limit routes.)
   */
  async setMaxConcurrent(
    keyId: string,
    maxConcurrent: number | null,
    manager: TransactionManager,
  ): Promise<{ previous: number | null; providerId: string } | null> {
    return this.keys.setMaxConcurrent(keyId, maxConcurrent, manager);
  }

  /** Writes buffered usage now (the usage route calls it so its answer includes this instance's last seconds). */
  flushUsage(): Promise<void> {
    return this.usageRecorder.flush();
  }

  // ---- cache & state maintenance (admin writes call these) ----------------------------------

  /** Drops the cached candidate list here and on every other instance. */
  async invalidate(providerId: string | '*'): Promise<void> {
    await Promise.all(this.dropCache(providerId));
    try {
      await this.pubsub.publish(INVALIDATE_CHANNEL, providerId);
    } catch (err) {
      this.logger.error({ err }, 'publishing a key-pool invalidation failed');
    }
  }

  /** Ends a key's cooldown in the store (enabling a key clears its cooldown). */
  async clearCooldown(providerId: string, keyId: string): Promise<void> {
    await this.store.run(clearKeyStateScript, allKeyNames(providerId, keyId), ['cooldown']);
  }

  /** Forgets everything the store knows about a key (deleted keys). */
  async forgetKey(providerId: string, keyId: string): Promise<void> {
    await this.store.run(clearKeyStateScript, allKeyNames(providerId, keyId), ['all']);
  }

  /** Drops the caches; returns the listeners' work (never rejecting) for `invalidate` to await. */
  private dropCache(providerId: string): Promise<void>[] {
    this.routable = null;
    if (providerId === '*') this.cache.clear();
    else this.cache.delete(providerId);
    const work: Promise<void>[] = [];
    for (const listener of this.dropListeners) {
      work.push(
        Promise.resolve()
          .then(() => listener(providerId))
          .catch((err: unknown) => this.logger.error({ err }, 'a provider cache listener failed')),
      );
    }
    return work;
  }

  private entry(providerId: string): Promise<ProviderEntry | null> {
    let p = this.cache.get(providerId);
    if (!p) {
      p = this.load(providerId);
      this.cache.set(providerId, p);
      p.catch(() => {
        if (this.cache.get(providerId) === p) this.cache.delete(providerId);
      });
    }
    return p;
  }

  private async load(providerId: string): Promise<ProviderEntry | null> {
    if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(providerId)) return null;
    const provider = await this.providers.byId(providerId);
    if (!provider) return null;
    const rows = await this.keys.ofProviderInSelectionOrder(providerId);
    const unusable = { disabled: 0, broken: 0, invalid: 0 };
    const candidates: Candidate[] = [];
    const present = new Set(rows.map((r) => r.id));
    for (const [id, s] of this.secrets)
      if (s.providerId === providerId && !present.has(id)) this.secrets.delete(id);
    for (const row of rows) {
      if (!row.enabled) {
        unusable.disabled++;
        continue;
      }
      if (row.brokenAt) {
        unusable.broken++;
        continue;
      }
      if (row.invalidAt) {
        unusable.invalid++;
        continue;
      }
      let apiKey: string;
      try {
        apiKey = this.cipher.decrypt(
          { keyId: row.encryptionKeyId, ciphertext: row.ciphertext },
          providerKeyAad(row.id),
        );
      } catch {
        unusable.broken++;
        // Only a value that is itself bad is marked broken for everyone; one sealed under a key id
        // another replica holds and this one lacks stays as it is (just not served from here).
        if (valueIsBad(row.encryptionKeyId, this.cipher, await this.keys.announcedEncryptionKeyIds()))
          await this.markBroken(row, provider.name);
        else
          this.logger.warn(
            `upstream key "${row.label}" (${row.id}) of provider ${provider.name} is sealed under encryption key "${row.encryptionKeyId}", which another instance announced and ENCRYPTION_KEYS here lacks; not served by this instance`,
          );
        continue;
      }
      this.secrets.set(row.id, { providerId, apiKey });
      candidates.push({
        info: {
          keyId: row.id,
          providerId,
          priority: row.priority,
          maxRpm: row.maxRpm,
          maxTpm: row.maxTpm,
          maxConcurrent: row.maxConcurrent,
        },
        label: row.label,
        apiKey,
        dbCooldownUntilMs: row.cooldownUntil ? row.cooldownUntil.getTime() : 0,
      });
    }
    return { provider, candidates, unusable };
  }

  /** Marks a key broken; logs only when this call is the one that flipped it (once across instances). */
  private async markBroken(row: ProviderKey, providerName: string): Promise<void> {
    try {
      if (await this.keys.markKeyBroken(row.id)) {
        this.logger.warn(
          `upstream key "${row.label}" (${row.id}) of provider ${providerName} cannot be decrypted (tampered, or its encryption key "${row.encryptionKeyId}" is gone); marked broken, the other keys keep serving`,
        );
      }
    } catch (err) {
      this.logger.error({ err, key_id: row.id }, 'marking a key broken failed');
    }
  }
}

/**
 * A lease as handed out: its fields as own enumerable properties, and `apiKey` a getter on the
 * prototype over a private field — so JSON.stringify / pino / util.inspect / a spread of a lease never
 * show the secret (as the non-enumerable own property defined after the object literal did before),
 * without that redefinition, which turned every lease into a dictionary-mode object: ~10 µs of CPU
 * per admission at c=1 embedded, and slower property reads on the lease for the rest of the request.
 */
class Lease implements KeyLease {
  leaseId: KeyLease['leaseId'];
  keyId: KeyLease['keyId'];
  keyLabel: KeyLease['keyLabel'];
  providerId: KeyLease['providerId'];
  providerName: KeyLease['providerName'];
  providerKind: KeyLease['providerKind'];
  baseUrl: KeyLease['baseUrl'];
  headers: KeyLease['headers'];
  timeoutMs: KeyLease['timeoutMs'];
  priority: KeyLease['priority'];
  acquiredAtMs: KeyLease['acquiredAtMs'];
  inFlight: KeyLease['inFlight'];
  concurrencyLimit: KeyLease['concurrencyLimit'];
  maxTpm: KeyLease['maxTpm'];
  maxRpm: KeyLease['maxRpm'];
  readonly #apiKey: string;

  constructor(f: Omit<KeyLease, 'apiKey'>, apiKey: string) {
    this.leaseId = f.leaseId;
    this.keyId = f.keyId;
    this.keyLabel = f.keyLabel;
    this.providerId = f.providerId;
    this.providerName = f.providerName;
    this.providerKind = f.providerKind;
    this.baseUrl = f.baseUrl;
    this.headers = f.headers;
    this.timeoutMs = f.timeoutMs;
    this.priority = f.priority;
    this.acquiredAtMs = f.acquiredAtMs;
    this.inFlight = f.inFlight;
    this.concurrencyLimit = f.concurrencyLimit;
    this.maxTpm = f.maxTpm;
    this.maxRpm = f.maxRpm;
    this.#apiKey = apiKey;
  }

  get apiKey(): string {
    return this.#apiKey;
  }
}

function plural(n: number, one: string, many: string): string {
  return n === 1 ? one : many;
}

function refusalMessage(
  kind: Exclude<RefusalKind, 'gate'>,
  name: string,
  usable: number,
  counts: { cooling: number; rateLimited: number; saturated: number },
  seconds: number,
): string {
  const one = usable === 1;
  const all = one ? `the only key of provider ${name} is` : `all ${usable} keys of provider ${name} are`;
  const first = one ? 'it' : 'the first';
  const their = one ? 'its' : 'their';
  const blockedKinds = [counts.cooling, counts.rateLimited, counts.saturated].filter((n) => n > 0).length;
  if (blockedKinds > 1) {
    const parts = [
      counts.cooling ? `${counts.cooling} cooling down` : '',
      counts.rateLimited
        ? `${counts.rateLimited} at ${plural(counts.rateLimited, 'its', 'their')} RPM/TPM limit`
        : '',
      counts.saturated
        ? `${counts.saturated} at ${plural(counts.saturated, 'its', 'their')} concurrency limit`
        : '',
    ].filter(Boolean);
    return `${all} busy (${parts.join(', ')}); the first is ready in ${seconds} s`;
  }
  switch (kind) {
    case 'cooling':
      return `${all} cooling down; ${first} is ready in ${seconds} s`;
    case 'rate_limited':
      return `${all} at ${their} RPM/TPM limit; ${first} has room in ${seconds} s`;
    case 'saturated':
      return `${all} at ${their} concurrency limit; retry in ${seconds} s`;
    default:
      return `provider ${name} has no usable keys`;
  }
}

/**
 * A refusal as the client-facing error: 429 (with Retry-After) while keys will recover by
 * themselves, 503 when no key is usable at all.
 */
export function refusalToApiError(refusal: KeyRefusal): ApiError {
  if (refusal.kind === 'no_usable_keys')
    return ApiError.serviceUnavailable(refusal.message, undefined, refusal.code);
  const seconds = Math.max(1, Math.ceil(refusal.retryAfterMs / 1000));
  return new ApiError(429, 'rate_limit_error', refusal.code, refusal.message, null, {
    'retry-after': String(seconds),
  });
}

/** A release that waits for its local admission grant's flush (ADMISSION_GRANTS; KeyPoolService.sendDeferred). */
export interface DeferredRelease {
  script: ReleaseScript;
  keys: string[];
  args: string[];
  resolve: (reply: ReleaseResult) => void;
  reject: (err: Error) => void;
}

/** Asked on every report: where a grant unit's release waits (`deferrable`: a plain answer), or null. */
export type ReleaseSinkFor = (lease: KeyLease, deferrable: boolean) => ((d: DeferredRelease) => void) | null;
