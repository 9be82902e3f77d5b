/**
 * Fair share within a priority band of a provider queue (docs/relay.md "Fair share across teams"):
 * start-time fair queueing. Pure arithmetic, shared by the queue scripts (Lua and LocalDb halves
 * follow it step by step) and the unit tests.
 *
 * A queue keeps a virtual clock V (the start tag of the last dispatched job) and, per flow (a team,
 * or the one "no team" flow), its last finish tag F. A job of a flow of weight w enqueued gets the
 * start tag S = max(V, F) and moves F to S + quantum(w); the waiting set orders a band by S, so
 * backlogged flows are dispatched in proportion to their weights, and a flow that arrives late
 * starts at V (no credit for the time it was idle, no penalty either).
 */

/** Tag units one request costs a flow of weight 1 (weight w: QUANTUM / w, rounded). */
export const FAIR_QUANTUM = 10_000;

/** Weights are clamped to 1..1000 (the teams table's range). */
export function quantumOf(weight: number): number {
  const w = Number.isFinite(weight) ? Math.min(1000, Math.max(1, Math.floor(weight))) : 1;
  return Math.max(1, Math.round(FAIR_QUANTUM / w));
}

/**
 * When V reaches this, the next enqueue shifts every tag of the queue down by V (a band holds tags
 * below 2³²). The queue's tags are also forgotten whenever it is empty, so this only happens under
 * a backlog that never drains for ~200,000 weight-1 dispatches.
 */
export const REBASE_AT = 0x80000000;

/** The highest start tag a band holds (priority · 2³² + tag must stay in its band). */
export const MAX_TAG = 0xffffffff;

/** The flow field of a request in the queue's tag hash: its team, or '-' for the no-team flow. */
export function flowOf(team: { id: string } | null | undefined): string {
  return team ? `t:${team.id}` : '-';
}

export interface FlowTags {
  /** Virtual clock: the start tag of the last dispatched job. */
  v: number;
  /** Finish tag per flow. */
  finish: Map<string, number>;
}

/** Enqueue: the job's start tag, and the flow's finish tag moved on by its quantum. */
export function enqueueTag(tags: FlowTags, flow: string, weight: number): number {
  const s = Math.min(MAX_TAG, Math.max(tags.v, tags.finish.get(flow) ?? 0));
  tags.finish.set(flow, s + quantumOf(weight));
  return s;
}

/** Dispatch of a job with start tag `s`: V moves to it. */
export function dispatchTag(tags: FlowTags, s: number): void {
  tags.v = s;
}
