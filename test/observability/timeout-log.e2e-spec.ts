import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newApiKey } from '../support/auth.js';
import { freePort, isolatedEnv, spawnGateway, type GatewayProcess } from '../support/gateway.js';

/**
 * A request whose body never arrives is answered 408 by Node's request timeout, outside Fastify
 * (BODY_READ_TIMEOUT_MS). Its one log line must say what the client was told — 408
 * request_timeout — not 499 "client closed", which is what the closed connection alone looks like.
 */
describe('the request log line of a body read timeout (real process, JSON logs)', () => {
  let gw: GatewayProcess;
  let cleanup: () => Promise<void>;
  let port: number;
  const adminKey = newApiKey();

  beforeAll(async () => {
    port = await freePort();
    const isolated = await isolatedEnv('embedded', {
      PORT: String(port),
      LOG_LEVEL: 'info',
      LOG_FORMAT: 'json',
      ADMIN_BOOTSTRAP_KEY: adminKey,
      BODY_READ_TIMEOUT_MS: '1000',
    });
    cleanup = isolated.cleanup;
    gw = spawnGateway(isolated.env);
    await gw.waitForOutput(/floodgate started/);
  });
  afterAll(async () => {
    await gw?.stop();
    await cleanup?.();
  });

  it('is logged once as 408 request_timeout with the request id, not as a 499 client abort', async () => {
    const requestId = `fg-timeout-${Date.now()}`;
    const answer = await new Promise<string>((resolve) => {
      const socket = net.connect(port, '127.0.0.1');
      let data = '';
      const cap = setTimeout(() => socket.destroy(), 10_000);
      socket.on('data', (chunk: Buffer) => (data += chunk.toString('latin1')));
      socket.on('error', () => undefined);
      socket.on('close', () => {
        clearTimeout(cap);
        resolve(data);
      });
      socket.write(
        `POST /api/keys HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${adminKey}\r\n` +
          `X-Request-Id: ${requestId}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"name":"slow`,
      );
    });
    expect(answer).toMatch(/^HTTP\/1\.1 408 /);
    await gw.waitForOutput(new RegExp(`"request_id":"${requestId}"[^\\n]*"status_code"`), 5000);
    const lines = gw
      .output()
      .split('\n')
      .filter((l) => l.includes(`"request_id":"${requestId}"`) && l.includes('"status_code"'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({
      status_code: 408,
      error_type: 'invalid_request_error',
      error_code: 'request_timeout',
    });
    expect(lines[0]!.aborted).toBeUndefined();
  });
});
