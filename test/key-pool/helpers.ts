import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { randomBytes } from 'node:crypto';
import type net from 'node:net';
import { DataSource } from 'typeorm';
import { createApp } from '../../src/app/create-app.js';
import { loadConfig } from '../../src/config/app-config.js';
import { KeyPoolService } from '../../src/key-pool/services/key-pool.service.js';
import type { AcquireResult, KeyLease } from '../../src/key-pool/key-pool.types.js';
import { getJson, type TestGateway } from '../support/gateway.js';

/** A valid admin API key for ADMIN_BOOTSTRAP_KEY (admin calls keep working once the auth guard is on). */
export function newAdminKey(): string {
  return `fg_${randomBytes(32).toString('base64url')}`;
}

export function encryptionKey(id: string): string {
  return `${id}:${randomBytes(32).toString('base64')}`;
}

export interface Admin {
  get(path: string): Promise<{ status: number; body: any; headers: Headers }>;
  post(path: string, body: unknown): Promise<{ status: number; body: any; headers: Headers }>;
  patch(path: string, body: unknown): Promise<{ status: number; body: any; headers: Headers }>;
  del(path: string): Promise<{ status: number; body: any; headers: Headers }>;
}

export function adminClient(url: string, key: string): Admin {
  const call = (method: string, path: string, body?: unknown) =>
    getJson(`${url}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${key}`,
        ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
      },
      body: body !== undefined ? JSON.stringify(body) : undefined,
    });
  return {
    get: (p) => call('GET', p),
    post: (p, b) => call('POST', p, b),
    patch: (p, b) => call('PATCH', p, b),
    del: (p) => call('DELETE', p),
  };
}

/** Creates a provider and keys through the admin API; returns their ids. */
export async function seedProvider(
  admin: Admin,
  provider: Record<string, unknown>,
  keys: Record<string, unknown>[],
): Promise<{ providerId: string; keyIds: string[] }> {
  const p = await admin.post('/api/admin/providers', provider);
  if (p.status !== 201) throw new Error(`creating provider failed: ${p.status} ${JSON.stringify(p.body)}`);
  const keyIds: string[] = [];
  for (const k of keys) {
    const r = await admin.post(`/api/admin/providers/${p.body.id}/keys`, k);
    if (r.status !== 201) throw new Error(`creating key failed: ${r.status} ${JSON.stringify(r.body)}`);
    keyIds.push(r.body.id);
  }
  return { providerId: p.body.id, keyIds };
}

export function pool(gw: { app: NestFastifyApplication }): KeyPoolService {
  return gw.app.get(KeyPoolService);
}

export function dataSource(gw: { app: NestFastifyApplication }): DataSource {
  return gw.app.get(DataSource);
}

export function leaseOf(r: AcquireResult): KeyLease {
  if (!r.ok) throw new Error(`expected a lease, got ${r.refusal.kind}: ${r.refusal.message}`);
  return r.lease;
}

/** A gateway on a GIVEN environment (shared database/Redis prefix: restarts and second instances). */
export async function startOn(env: Record<string, string>): Promise<TestGateway> {
  const config = loadConfig(env);
  const app = await createApp(config);
  await app.listen({ port: 0, host: '127.0.0.1' });
  const address = app.getHttpServer().address() as net.AddressInfo;
  return { url: `http://127.0.0.1:${address.port}`, app, config, env, close: () => app.close() };
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
