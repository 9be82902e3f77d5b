/**
 * A routed request's model names: the upstream receives the target's model, the client sees the
 * alias it sent. Used only for routed requests (the no-route path sends and relays bytes unchanged).
 */

/** The client's body with the target's model, for the upstream (a shallow copy). */
export function withModel(body: Record<string, unknown>, model: string): Record<string, unknown> {
  return { ...body, model };
}

/**
 * A JSON answer with `model` set to the alias. Text that is not a JSON object with a string `model`
 * is returned unchanged (an answer Floodgate can't read is relayed as it came).
 */
export function aliasJson(text: string, alias: string): string {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return text;
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return text;
  const obj = parsed as Record<string, unknown>;
  if (typeof obj.model !== 'string' || obj.model === alias) return text;
  obj.model = alias;
  return JSON.stringify(obj);
}

/**
 * One SSE event (without its separator) with the `model` of its JSON data set to the alias; the
 * other lines (event:, id:, comments) stay where they were. Events without JSON data, or whose data
 * has no string `model`, are returned unchanged.
 */
export function aliasSseEvent(event: string, alias: string): string {
  if (!event.includes('"model"')) return event;
  const lines = event.split(/\r?\n/);
  let data: string | null = null;
  let first = -1;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (!line.startsWith('data:')) continue;
    const value = line.slice(line.charAt(5) === ' ' ? 6 : 5);
    if (data === null) {
      data = value;
      first = i;
    } else data = `${data}\n${value}`;
  }
  if (data === null) return event;
  const rewritten = aliasJson(data, alias);
  if (rewritten === data) return event;
  const newline = event.includes('\r\n') ? '\r\n' : '\n';
  const out: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (i === first) out.push(`data: ${rewritten}`);
    else if (!line.startsWith('data:')) out.push(line);
  }
  return out.join(newline);
}

/**
 * `x-floodgate-route-target`: which target answered (or was tried last). A header value can hold
 * only printable ASCII safely (Node refuses characters past U+00FF): anything else in a model name
 * is percent-encoded (UTF-8), as in a URL.
 */
export function routeTargetHeader(providerName: string, model: string): string {
  const value = `${providerName}/${model}`;
  return /[^\x20-\x7e]/.test(value)
    ? value.replace(/[^\x20-\x7e]+/g, (run) => encodeURIComponent(run))
    : value;
}
