import net from 'node:net';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  guardedConnector,
  UpstreamGuardService,
} from '../../src/key-pool/services/upstream-guard.service.js';
import { startGateway, type TestGateway } from '../support/gateway.js';
import { adminClient, newAdminKey, type Admin } from './helpers.js';

/** A loopback TCP server that only counts who connects: it must see nobody while private upstreams are disallowed. */
class Sentinel {
  connections = 0;
  private readonly sockets = new Set<net.Socket>();
  private server = net.createServer((socket) => {
    this.connections++;
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.end('HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok');
  });
  port = 0;
  async start(): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as net.AddressInfo).port;
  }
  close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

describe('SSRF guard with ALLOW_PRIVATE_UPSTREAMS=false', () => {
  let gw: TestGateway;
  let admin: Admin;
  const sentinel = new Sentinel();
  const adminKey = newAdminKey();

  beforeAll(async () => {
    await sentinel.start();
    gw = await startGateway('embedded', { ADMIN_BOOTSTRAP_KEY: adminKey, ALLOW_PRIVATE_UPSTREAMS: 'false' });
    admin = adminClient(gw.url, adminKey);
  });
  afterAll(async () => {
    await sentinel.close();
    await gw?.close();
  });

  it('refuses every spelling of metadata, link-local, loopback and private addresses at save time (400 naming base_url)', async () => {
    const p = sentinel.port;
    const table = [
      'http://169.254.169.254/latest/meta-data/',
      'http://2852039166/',
      'http://0xA9FEA9FE/',
      'http://0251.0376.0251.0376/',
      'http://169.254.43518/',
      'http://[::ffff:169.254.169.254]/',
      'http://[::ffff:a9fe:a9fe]/',
      'http://[fd00:ec2::254]/',
      'http://[fe80::1]/',
      'http://100.100.100.200/',
      'http://0.0.0.0/',
      'http://0/',
      `http://127.0.0.1:${p}/v1`,
      `http://127.1:${p}/v1`,
      `http://2130706433:${p}/v1`,
      `http://0x7f000001:${p}/v1`,
      `http://[::1]:${p}/v1`,
      `http://[::ffff:127.0.0.1]:${p}/v1`,
      `http://localhost:${p}/v1`, // a host NAME resolving to loopback
      'http://10.0.0.1/v1',
      'http://172.16.5.4/v1',
      'http://192.168.0.10/v1',
      'http://100.64.0.1/v1',
      'http://[fd12:3456::1]/v1',
    ];
    for (const base_url of table) {
      const r = await admin.post('/api/admin/providers', { name: 'ssrf', base_url });
      expect(r.status, base_url).toBe(400);
      expect(r.body.error, base_url).toMatchObject({ param: 'base_url', code: 'base_url_forbidden' });
    }
    for (const base_url of [
      'file:///etc/passwd',
      'gopher://127.0.0.1:6379/_INFO',
      'http://user:pw@example.com/',
    ]) {
      const r = await admin.post('/api/admin/providers', { name: 'ssrf', base_url });
      expect(r.status, base_url).toBe(400);
      expect(r.body.error).toMatchObject({ param: 'base_url', code: 'base_url_invalid' });
    }
    // PATCH is checked the same way
    const ok = await admin.post('/api/admin/providers', {
      name: 'public',
      base_url: 'http://93.184.216.34/v1',
    });
    expect(ok.status).toBe(201);
    const patched = await admin.patch(`/api/admin/providers/${ok.body.id}`, {
      base_url: `http://127.0.0.1:${p}/v1`,
    });
    expect(patched.status).toBe(400);
    expect(patched.body.error.param).toBe('base_url');
    expect(sentinel.connections).toBe(0);
  });

  it('connect time: the relay connector refuses loopback literals, names resolving to loopback and rebinding DNS; the sentinel sees 0 connections', async () => {
    const guard = gw.app.get(UpstreamGuardService);
    expect(guard.allowPrivate).toBe(false);
    const agent = new Agent({ connect: guard.connector() });
    for (const url of [
      `http://127.0.0.1:${sentinel.port}/`,
      `http://localhost:${sentinel.port}/`,
      `http://[::ffff:127.0.0.1]:${sentinel.port}/`,
    ]) {
      await expect(request(url, { dispatcher: agent }), url).rejects.toMatchObject({
        code: 'UPSTREAM_ADDRESS_REFUSED',
      });
    }
    // DNS rebinding: the name looked public when it was saved; now it answers 127.0.0.1
    const rebinding = new Agent({
      connect: guardedConnector({
        allowPrivate: false,
        lookup: (_host, opts, cb) =>
          opts.all ? cb(null, [{ address: '127.0.0.1', family: 4 }]) : cb(null, '127.0.0.1', 4),
      }),
    });
    await expect(
      request(`http://api.rebind.test:${sentinel.port}/`, { dispatcher: rebinding }),
    ).rejects.toMatchObject({
      code: 'UPSTREAM_ADDRESS_REFUSED',
    });
    expect(sentinel.connections).toBe(0);
    await Promise.all([agent.close(), rebinding.close()]);

    // control: the same connector with private upstreams allowed does reach the sentinel (the sentinel works)
    const allowed = new Agent({ connect: guardedConnector({ allowPrivate: true }) });
    const res = await request(`http://127.0.0.1:${sentinel.port}/`, { dispatcher: allowed });
    expect(await res.body.text()).toBe('ok');
    expect(sentinel.connections).toBe(1);
    await allowed.close();
  });
});
