import type { Page, Provider, User } from '../api-types.js';
import type { AdminClient, Query } from '../client.js';
import { CommandError } from '../errors.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const PAGE_SIZE = 500;

export function isUuid(value: string): boolean {
  return UUID.test(value);
}

/** Every page of a `{data, has_more}` list. */
export async function listAll<T>(client: AdminClient, path: string, query: Query = {}): Promise<T[]> {
  const all: T[] = [];
  for (let offset = 0; ; offset += PAGE_SIZE) {
    const page = await client.get<Page<T>>(path, { ...query, limit: PAGE_SIZE, offset });
    all.push(...page.data);
    if (!page.has_more || page.data.length === 0) return all;
  }
}

/** A provider given by id or by name (case-insensitive). */
export async function resolveProvider(client: AdminClient, ref: string): Promise<Provider> {
  if (isUuid(ref)) return client.get<Provider>(`/api/admin/providers/${ref}`);
  const providers = await client.get<Provider[]>('/api/admin/providers');
  const found = providers.find((p) => p.name.toLowerCase() === ref.toLowerCase());
  if (!found) {
    const names = providers.map((p) => p.name).join(', ');
    throw new CommandError(`no provider named "${ref}" (providers: ${names || 'none yet'})`);
  }
  return found;
}

/** A user id given as an id or an email address. */
export async function resolveUserId(client: AdminClient, ref: string): Promise<string> {
  if (!ref.includes('@')) return ref;
  const page = await client.get<Page<User>>('/api/admin/users', { email: ref });
  const user = page.data[0];
  if (!user) throw new CommandError(`no user with email ${ref}`);
  return user.id;
}

/** "rpm 60, tpm unlimited". */
export function limitsText(limits: { rpm: number | null; tpm: number | null }): string {
  return `rpm ${limits.rpm ?? 'default'}, tpm ${limits.tpm ?? 'unlimited'}`;
}
