import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../config/app-config.js';

function problems(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  return [];
}

describe('body capture config', () => {
  it('defaults: 32768 bytes, 7 days', () => {
    expect(loadConfig({}).requests).toEqual({ bodyCaptureMaxBytes: 32_768, bodyCaptureRetentionDays: 7 });
    expect(
      loadConfig({ BODY_CAPTURE_MAX_BYTES: '1024', BODY_CAPTURE_RETENTION_DAYS: '30' }).requests,
    ).toEqual({ bodyCaptureMaxBytes: 1024, bodyCaptureRetentionDays: 30 });
  });

  it('a bad value stops start-up naming the variable', () => {
    expect(problems({ BODY_CAPTURE_MAX_BYTES: '10' })).toEqual([
      'BODY_CAPTURE_MAX_BYTES must be an integer 256-10485760, got "10"',
    ]);
    expect(problems({ BODY_CAPTURE_RETENTION_DAYS: '0' })[0]).toContain('BODY_CAPTURE_RETENTION_DAYS');
    expect(problems({ BODY_CAPTURE_RETENTION_DAYS: 'week' })[0]).toContain('BODY_CAPTURE_RETENTION_DAYS');
  });
});
