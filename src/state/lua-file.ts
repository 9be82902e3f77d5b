import { readFileSync } from 'node:fs';

/**
 * Reads a Lua script that sits next to the module asking for it (`new URL('./x.lua',
 * import.meta.url)`): src/ under the tests, dist/src/ in a build (scripts/copy-lua.mjs copies every
 * src/**\/*.lua there). `constants` are lines the file must contain exactly (`local NAME = value`),
 * so a value shared with TypeScript cannot drift: a mismatch fails at start, not in production.
 */
export function readLua(url: URL, constants: Record<string, string | number> = {}): string {
  const text = readFileSync(url, 'utf8');
  for (const [name, value] of Object.entries(constants)) {
    const literal = typeof value === 'string' ? `'${value}'` : String(value);
    const re = new RegExp(`^local ${name} = ${literal.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(\\s|$)`, 'm');
    if (!re.test(text)) throw new Error(`${url.pathname}: expected "local ${name} = ${literal}"`);
  }
  return text;
}
