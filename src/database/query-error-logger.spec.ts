import { Logger } from '@nestjs/common';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { QueryErrorLogger } from './query-error-logger.js';

describe('QueryErrorLogger', () => {
  afterEach(() => vi.restoreAllMocks());

  it('logs a failed statement without its parameters, at most once per interval, counting the rest', () => {
    const warn = vi.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
    const log = new QueryErrorLogger(60_000);
    log.logQueryError(new Error('connect ECONNREFUSED'), 'INSERT INTO "request_log" ("id") VALUES ($1)', [
      'secret-parameter',
    ]);
    log.logQueryError(new Error('connect ECONNREFUSED'), 'SELECT 1', ['other']);
    expect(warn).toHaveBeenCalledTimes(1);
    const line = String(warn.mock.calls[0]![0]);
    expect(line).toContain('connect ECONNREFUSED');
    expect(line).toContain('INSERT INTO "request_log"');
    expect(line).not.toContain('secret-parameter');
  });

  it('reports how many failures it held back once the interval has passed', () => {
    vi.useFakeTimers();
    try {
      const warn = vi.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
      const log = new QueryErrorLogger(10_000);
      log.logQueryError('first', 'SELECT 1');
      log.logQueryError('second', 'SELECT 2');
      log.logQueryError('third', 'SELECT 3');
      vi.advanceTimersByTime(10_001);
      log.logQueryError('fourth', 'SELECT 4');
      expect(warn).toHaveBeenCalledTimes(2);
      expect(String(warn.mock.calls[1]![0])).toContain('fourth');
      expect(String(warn.mock.calls[1]![0])).toContain('2 more failed statement(s)');
    } finally {
      vi.useRealTimers();
    }
  });
});
