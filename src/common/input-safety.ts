/**
 * Input that can never be stored or safely processed, refused at the edge with a 400 naming the
 * field instead of failing deep inside (a Postgres error, a stack overflow) as a 500.
 *
 * - JSON nested deeper than MAX_JSON_DEPTH: the body parser (src/app/create-app.ts) refuses it
 *   for every route, relay included, before anything recursive (class-transformer, class-validator,
 *   JSON.stringify on the way upstream) walks it.
 * - Strings Postgres can't store: NUL (text and jsonb refuse it) and lone UTF-16 surrogates (not
 *   representable in UTF-8; jsonb refuses the `\ud800` escape). The validation pipe
 *   (src/common/validation.ts) refuses them in every body, query and path parameter of the admin
 *   API; the relay checks the fields it stores (`model`), see docs/relay.md.
 * - Numbers beyond ±Number.MAX_SAFE_INTEGER (2^53 − 1): not exact in JavaScript, and beyond a
 *   Postgres bigint when used as an offset.
 */

/** Deeper JSON bodies are refused with 400 `json_too_deep`. OpenAI bodies (tool schemas included) stay far below. */
export const MAX_JSON_DEPTH = 64;

// A NUL, a high surrogate not followed by a low one, or a low surrogate not preceded by a high one.
// eslint-disable-next-line no-control-regex -- NUL is exactly what this looks for
const UNSTORABLE = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Why Postgres can't store `s` ("a NUL character", "an unpaired UTF-16 surrogate"), or null when it can. */
export function unstorableReason(s: string): string | null {
  const m = UNSTORABLE.exec(s);
  if (!m) return null;
  return m[0] === '\u0000' ? 'a NUL character (\\u0000)' : 'an unpaired UTF-16 surrogate';
}

export interface InputProblem {
  /** Where: `name`, `models[1]`, `headers.X-Org` (keys with odd characters are named by their parent). */
  path: string;
  message: string;
}

function join(parent: string, key: string | number): string {
  if (typeof key === 'number') return `${parent}[${key}]`;
  return parent ? `${parent}.${key}` : key;
}

/**
 * Every unstorable string (as a value or as an object key) and unsafe number in `value` (at most
 * `limit`), each with its path under `root` (the field name, or '' for a whole body). Bounded:
 * `value` was parsed by the depth-limited body parser, or is a query/path parameter.
 */
export function unsafeInputProblems(value: unknown, root = '', limit = 20): InputProblem[] {
  const problems: InputProblem[] = [];
  const stack: { value: unknown; path: string }[] = [{ value, path: root }];
  while (stack.length > 0 && problems.length < limit) {
    const { value: v, path } = stack.pop()!;
    const name = path || 'the body';
    if (typeof v === 'string') {
      const reason = unstorableReason(v);
      if (reason) problems.push({ path, message: `${name} must not contain ${reason}` });
    } else if (typeof v === 'number') {
      if (Number.isFinite(v) && Math.abs(v) > Number.MAX_SAFE_INTEGER)
        problems.push({
          path,
          message: `${name} must be between -${Number.MAX_SAFE_INTEGER} and ${Number.MAX_SAFE_INTEGER}`,
        });
    } else if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) stack.push({ value: v[i], path: join(path, i) });
    } else if (v !== null && typeof v === 'object') {
      const entries = Object.entries(v);
      for (const [key] of entries) {
        const reason = unstorableReason(key);
        if (reason) problems.push({ path, message: `${name} must not have a key containing ${reason}` });
      }
      for (let i = entries.length - 1; i >= 0; i--) {
        const [key, child] = entries[i]!;
        if (!unstorableReason(key)) stack.push({ value: child, path: join(path, key) });
      }
    }
  }
  return problems;
}

/**
 * Where `value` first nests deeper than `max` levels (the path of the top-level field, '' for the
 * root), or null. Iterative, and stops at the first offender: cheap next to JSON.parse itself.
 */
export function tooDeepAt(value: unknown, max = MAX_JSON_DEPTH): string | null {
  // Only containers are pushed: a long array of numbers (embeddings input) costs one typeof each.
  const stack: { value: object; depth: number; top: string }[] = [];
  if (value !== null && typeof value === 'object') stack.push({ value, depth: 1, top: '' });
  while (stack.length > 0) {
    const { value: v, depth, top } = stack.pop()!;
    if (depth > max) return top;
    if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) {
        const child: unknown = v[i];
        if (child !== null && typeof child === 'object')
          stack.push({ value: child, depth: depth + 1, top: depth === 1 ? `[${i}]` : top });
      }
    } else {
      for (const key in v) {
        if (!Object.hasOwn(v, key)) continue;
        const child: unknown = (v as Record<string, unknown>)[key];
        if (child !== null && typeof child === 'object')
          stack.push({ value: child, depth: depth + 1, top: depth === 1 ? key : top });
      }
    }
  }
  return null;
}
