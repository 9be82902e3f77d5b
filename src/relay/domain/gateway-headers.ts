/**
 * Floodgate's own response headers and the overhead they report: time in the gateway with the
 * upstream and the queue left out.
 */
export function gatewayTiming(
  elapsedMs: number,
  queueMs: number,
  upstreamMs: number,
  keyId: string,
): { overheadMs: number; headers: Record<string, string> } {
  const overheadMs = Math.max(0, elapsedMs - queueMs - upstreamMs);
  return {
    overheadMs,
    headers: {
      'x-floodgate-queue-ms': String(Math.round(queueMs)),
      'x-floodgate-overhead-ms': overheadMs.toFixed(2),
      'x-floodgate-provider-key': keyId,
    },
  };
}
