import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newAdminKey } from '../key-pool/helpers.js';
import { getJson, MODES, startGateway, type TestGateway } from '../support/gateway.js';

describe.each(MODES)('HTTP basics (%s mode)', (mode) => {
  let gw: TestGateway;
  const adminKey = newAdminKey();
  beforeAll(async () => {
    gw = await startGateway(mode, { ADMIN_BOOTSTRAP_KEY: adminKey });
  });
  afterAll(async () => {
    await gw?.close();
  });

  it('/health/live and /health answer 200 with the process check', async () => {
    for (const path of ['/health/live', '/health']) {
      const r = await getJson(`${gw.url}${path}`);
      expect(r.status).toBe(200);
      expect(r.body.status).toBe('ok');
      expect(r.body.details.process.status).toBe('up');
    }
  });

  it('/health/ready reports each dependency with its latency', async () => {
    const r = await getJson(`${gw.url}/health/ready`);
    expect(r.status).toBe(200);
    expect(r.body.details.database).toMatchObject({
      status: 'up',
      kind: mode === 'embedded' ? 'embedded' : 'postgres',
    });
    expect(typeof r.body.details.database.latency_ms).toBe('number');
    if (mode === 'distributed') {
      expect(r.body.details.redis.status).toBe('up');
      expect(typeof r.body.details.redis.latency_ms).toBe('number');
    } else {
      expect(r.body.details.redis).toBeUndefined();
    }
  });

  it('/docs serves Swagger UI and /docs-json a valid OpenAPI 3 document', async () => {
    const ui = await fetch(`${gw.url}/docs`);
    expect(ui.status).toBe(200);
    expect(await ui.text()).toContain('swagger-ui');
    const doc = await getJson(`${gw.url}/docs-json`);
    expect(doc.status).toBe(200);
    expect(doc.body.openapi).toMatch(/^3\./);
    expect(doc.body.info).toMatchObject({
      title: 'Floodgate',
      version: expect.stringMatching(/^\d+\.\d+\.\d+/),
    });
    expect(doc.body.info.description).toContain('OpenAI-compatible');
    expect(Object.keys(doc.body.components.securitySchemes).sort()).toEqual(['api-key', 'bearer']);
    expect(doc.body.components.securitySchemes['api-key']).toMatchObject({
      type: 'apiKey',
      in: 'header',
      name: 'x-api-key',
    });
    expect(doc.body.components.schemas.ErrorResponseDto).toBeDefined();
    expect(doc.body.paths['/health/ready'].get.responses['503']).toBeDefined();
  });

  it('unknown route → 404 in the error shape with the request id', async () => {
    const r = await getJson(`${gw.url}/no/such/route`);
    expect(r.status).toBe(404);
    expect(r.body).toEqual({
      error: {
        type: 'invalid_request_error',
        code: 'not_found',
        message: 'Cannot GET /no/such/route',
        param: null,
        request_id: r.headers.get('x-request-id'),
      },
    });
  });

  it('echoes a sane X-Request-Id and replaces an insane one', async () => {
    const sane = await fetch(`${gw.url}/health/live`, { headers: { 'x-request-id': 'trace-123.abc:1' } });
    expect(sane.headers.get('x-request-id')).toBe('trace-123.abc:1');
    const insane = await fetch(`${gw.url}/health/live`, { headers: { 'x-request-id': 'x'.repeat(300) } });
    expect(insane.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('invalid JSON → 400 invalid_json; body over the limit → 413', async () => {
    const bad = await getJson(`${gw.url}/health`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{nope',
    });
    expect(bad.status).toBe(400);
    expect(bad.body.error).toMatchObject({ type: 'invalid_request_error', code: 'invalid_json' });
    const big = await getJson(`${gw.url}/health`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ a: 'x'.repeat(gw.config.http.bodyLimitBytes + 10) }),
    });
    expect(big.status).toBe(413);
    expect(big.body.error).toMatchObject({ type: 'invalid_request_error', code: 'payload_too_large' });
    expect(big.body.error.request_id).toBe(big.headers.get('x-request-id'));
  });

  it('a JSON content type with no body: a DELETE has no body (204); a POST is 400 invalid_json in the error shape', async () => {
    const json = { authorization: `Bearer ${adminKey}`, 'content-type': 'application/json' };
    // Fastify refused this with its own message (400 "Body cannot be empty…", code invalid_request)
    const del = await fetch(`${gw.url}/api/admin/rate-limits/ip:192.0.2.7`, {
      method: 'DELETE',
      headers: json,
    });
    expect(del.status, await del.text()).toBe(204);
    const post = await getJson(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: json });
    expect(post.status).toBe(400);
    expect(post.body.error).toMatchObject({
      type: 'invalid_request_error',
      code: 'invalid_json',
      message: 'Request body is empty: send a JSON object',
      param: null,
    });
  });
});
