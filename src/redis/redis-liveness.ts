import type { Socket } from 'node:net';
import type { Cluster, Redis } from 'ioredis';

/** Redis cannot answer: `reason` names the connection state that says so (logged, counted). */
export class RedisUnavailableError extends Error {
  constructor(
    readonly kind: RedisUnavailableCause,
    message: string,
  ) {
    super(message);
    this.name = 'RedisUnavailableError';
  }
}

/**
 * Why a connection is unavailable:
 * - `not_connected`: ioredis' status is not `ready` (connecting, reconnecting, closed) — a killed or
 *   unreachable Redis; known at once, without sending anything;
 * - `silent`: the connection is up but Redis sent no byte for the silence threshold while a command
 *   of ours waited — a frozen (SIGSTOP) or partitioned Redis;
 * - `connection_lost`: the connection closed with the command in flight;
 * - `error_reply`: Redis answered with an error (LOADING, OOM, READONLY, …).
 */
export type RedisUnavailableCause = 'not_connected' | 'silent' | 'connection_lost' | 'error_reply';

/**
 * What "Redis is unavailable" means for one connection — and what it never means: "this process was
 * too busy to read Redis' answer in time". A busy event loop makes our waits longer, never a Redis
 * outage:
 *
 * - The connection must be `ready` (ioredis status) with a writable socket. Anything else is
 *   unavailable at once.
 * - A command counts as unanswered only while Redis is SILENT: no byte arrived on the connection
 *   since the command was written (writes are synchronous on connections without auto-pipelining:
 *   `writtenAt` is taken right before the write) and since the last byte of any other reply. Redis
 *   answers one connection in order, so bytes flowing mean Redis is working through our commands.
 * - Silence is judged only after this process has had a turn of its event loop to read its sockets:
 *   when the timer fires, the verdict waits for `setImmediate` (which runs after the I/O poll phase),
 *   so a reply sitting unread in our socket — because our loop was busy (timers run before I/O) — is
 *   read first and counts as an answer. A loop blocked 300 ms therefore reads the reply late, but
 *   reads it: the request is slower, not "Redis is down".
 * - Once a command has been silent for `silenceMs`, the connection is `stalled`: every command still
 *   waiting gives up at once (they are behind it) — except those given a longer threshold (`wait`'s
 *   `silenceMs`: the limiter's non-relay decisions), which wait out their own, and `unavailable()` answers without sending until
 *   a byte arrives again (a PING probe, sent one at a time, finds out) or the connection reconnects.
 */
export class RedisLiveness implements LivenessSource {
  private lastByteAt = 0;
  private stalledAt: number | null = null;
  private probing = false;
  private readonly watched = new WeakSet<Socket>();
  /** Every command waiting, with its silence threshold. */
  private readonly waiting = new Map<(err: RedisUnavailableError) => void, number>();

  constructor(
    readonly client: Redis,
    readonly silenceMs: number,
  ) {
    const watch = (): void => {
      const stream = client.stream as Socket | undefined;
      if (!stream || this.watched.has(stream)) return;
      this.watched.add(stream);
      stream.on('data', () => {
        this.lastByteAt = performance.now();
        this.stalledAt = null;
      });
    };
    client.on('connect', watch);
    client.on('ready', () => {
      watch();
      this.stalledAt = null;
    });
    watch();
  }

  /** One Redis: every command is judged by this connection. */
  for(): CommandLiveness {
    return this;
  }

  /** True while Redis has been found silent and has not sent a byte since. */
  get stalled(): boolean {
    return this.stalledAt !== null;
  }

  /**
   * Why Redis cannot be asked right now (null: ask it). While stalled, starts a PING probe (one at a
   * time) whose answer ends the stall.
   */
  unavailable(): RedisUnavailableError | null {
    const state = this.connectionState();
    if (state) return new RedisUnavailableError('not_connected', `redis connection is ${state}`);
    if (this.stalledAt === null) return null;
    this.probe();
    const ms = Math.round(performance.now() - (this.lastByteAt || this.stalledAt));
    return new RedisUnavailableError(
      'silent',
      `redis has sent nothing for ${ms} ms while commands waited (connection ready: frozen or unreachable)`,
    );
  }

  /**
   * Waits for `command`, written on this connection at `writtenAt` (performance.now(), taken right
   * before the call that wrote it). Resolves with Redis' answer however long a busy Redis or a busy
   * loop takes to deliver it; rejects with RedisUnavailableError only when the connection is lost,
   * Redis answers with an error, or Redis stays silent for `silenceMs` (this command's own
   * threshold, default the connection's: a command that found Redis silent for its threshold gives
   * up every waiting command whose threshold is no longer; one with a longer threshold keeps waiting
   * until Redis has been silent for that long).
   */
  wait<T>(command: Promise<T>, writtenAt: number, silenceMs = this.silenceMs): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let done = false;
      let timer: NodeJS.Timeout | undefined;
      const finish = (): boolean => {
        if (done) return false;
        done = true;
        if (timer) clearTimeout(timer);
        this.waiting.delete(giveUp);
        return true;
      };
      const giveUp = (err: RedisUnavailableError): void => {
        if (finish()) reject(err);
      };
      const check = (): void => {
        timer = undefined;
        // one turn of the loop first: the poll phase reads whatever already sits in our socket
        setImmediate(() => {
          if (done) return;
          const now = performance.now();
          const silent = now - Math.max(writtenAt, this.lastByteAt);
          if (silent < silenceMs) {
            timer = setTimeout(check, Math.max(1, silenceMs - silent));
            return;
          }
          this.stalledAt ??= now;
          const err = new RedisUnavailableError(
            'silent',
            `redis sent nothing for ${Math.round(silent)} ms while a command waited (connection ready: frozen or unreachable)`,
          );
          for (const [other, threshold] of [...this.waiting]) if (threshold <= silenceMs) other(err);
          giveUp(err);
        });
      };
      this.waiting.set(giveUp, silenceMs);
      timer = setTimeout(check, silenceMs);
      command.then(
        (value) => {
          if (finish()) resolve(value);
        },
        (err: unknown) => {
          if (!finish()) return;
          reject(this.classify(err));
        },
      );
    });
  }

  private classify(err: unknown): Error {
    if (err instanceof RedisUnavailableError) return err;
    const message = err instanceof Error ? err.message : String(err);
    if (err instanceof Error && err.name === 'ReplyError')
      return new RedisUnavailableError('error_reply', `redis answered with an error: ${message}`);
    const state = this.connectionState();
    if (state) return new RedisUnavailableError('not_connected', `redis connection is ${state}: ${message}`);
    return new RedisUnavailableError('connection_lost', `redis connection failed: ${message}`);
  }

  /** Null when the connection can carry a command; otherwise its state (ioredis status, socket). */
  private connectionState(): string | null {
    const status = this.client.status;
    if (status !== 'ready') return `${status}, not ready`;
    const stream = this.client.stream as Socket | undefined;
    // reset by the peer: the socket is no longer writable a moment before ioredis' status says so
    if (!stream?.writable) return 'closing (socket no longer writable)';
    return null;
  }

  private probe(): void {
    if (this.probing || this.connectionState()) return;
    this.probing = true;
    this.client.ping().then(
      () => {
        this.probing = false;
      },
      () => {
        this.probing = false;
      },
    );
  }
}

/** What judges one command: RedisLiveness itself (one Redis), or the liveness of the node a command goes to. */
export interface CommandLiveness {
  readonly stalled: boolean;
  unavailable(): RedisUnavailableError | null;
  /** `silenceMs`: this command's silence threshold (default: the connection's). */
  wait<T>(command: Promise<T>, writtenAt: number, silenceMs?: number): Promise<T>;
}

/** The liveness that judges a command over `keys` (logical keys, without the deployment prefix). */
export interface LivenessSource {
  for(keys: readonly string[]): CommandLiveness;
}

/**
 * RedisLiveness on a Redis Cluster: one per node connection of the watched Cluster client (created
 * on first use, so nodes that join are covered; a node connection ioredis replaces gets a fresh
 * one). A command over `keys` is judged by the liveness of the master owning their slot (every
 * limiter command touches one slot: its keys share a hash tag), with the same rules as on one Redis:
 * the node's connection not ready → unavailable at once; the node silent for `silenceMs` while the
 * command waits → unavailable; our own busy loop → never.
 *
 * Not judged per node: any command while the cluster client itself is not ready (its slot map
 * unknown), and a command with no keys — the limiter's start-up probe, answered only once every
 * master's connection is ready (so the first decisions after start are not failure-mode ones).
 * A command ioredis redirects (MOVED/ASK during a resharding) is still judged by the first node's
 * silence; the node answered the redirection, so it is not silent, and the redirected node's
 * silence counts only once the first node has been silent for `silenceMs` too.
 */
export class ClusterLiveness implements LivenessSource {
  private readonly perNode = new WeakMap<Redis, RedisLiveness>();

  constructor(
    readonly cluster: Cluster,
    readonly silenceMs: number,
    /** The deployment prefix the store adds to every key (never contains braces). */
    readonly prefix: string,
  ) {}

  for(keys: readonly string[]): CommandLiveness {
    if (this.cluster.status !== 'ready')
      return notReady(`redis cluster client is ${this.cluster.status}, not ready`);
    if (keys.length === 0) {
      // the start-up probe: answered once every master's connection is ready
      const masters = this.cluster.nodes('master');
      const waiting = masters.filter((n) => n.status !== 'ready');
      waiting.forEach(connectIfIdle);
      if (masters.length === 0 || waiting.length > 0)
        return notReady(
          `${waiting.length} of ${masters.length} redis cluster master connection(s) not ready`,
        );
      return this.ofNode(masters[0]!);
    }
    const node = this.nodeFor(`${this.prefix}:${keys[0]}`);
    if (!node) return notReady('no redis cluster master serves this slot');
    // never connected yet (ioredis connects nodes lazily): connect it, and refuse this command
    // like any not-ready connection (a node still `connecting` would refuse it anyway)
    connectIfIdle(node);
    return this.ofNode(node);
  }

  private ofNode(node: Redis): RedisLiveness {
    let liveness = this.perNode.get(node);
    if (!liveness) {
      liveness = new RedisLiveness(node, this.silenceMs);
      this.perNode.set(node, liveness);
    }
    return liveness;
  }

  /** The master connection ioredis sends a command on `key` to (its slot map, as ioredis keeps it). */
  private nodeFor(key: string): Redis | undefined {
    const owners = this.cluster.slots[keySlot(key)];
    const master = owners?.[0];
    if (!master) return undefined;
    return this.cluster.nodes('master').find((n) => `${n.options.host}:${n.options.port}` === master);
  }
}

function connectIfIdle(node: Redis): void {
  if (node.status === 'wait') node.connect().catch(() => undefined);
}

function notReady(message: string): CommandLiveness {
  const err = (): RedisUnavailableError => new RedisUnavailableError('not_connected', message);
  return {
    stalled: false,
    unavailable: err,
    wait: () => Promise.reject(err()),
  };
}

/** CRC16/XMODEM, the hash Redis Cluster uses for slots. */
function crc16(data: Buffer): number {
  let crc = 0;
  for (const byte of data) {
    crc ^= byte << 8;
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc;
}

/** The cluster slot of a key: only the part between the first `{` and the next `}` when non-empty. */
export function keySlot(key: string): number {
  const open = key.indexOf('{');
  if (open !== -1) {
    const close = key.indexOf('}', open + 1);
    if (close > open + 1) key = key.slice(open + 1, close);
  }
  return crc16(Buffer.from(key)) % 16384;
}
