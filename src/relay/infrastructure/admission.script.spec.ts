import { describe, expect, it } from 'vitest';
import { decodeAdmission, encodeAdmission, splitAdmission } from './admission.script.js';

describe('relay admission encoder / decoder', () => {
  const client = {
    keys: ['rl:{key:a}:key:sw', 'rl:{ip:1.2.3.4}:ip:sw'],
    args: ['m.1', 0, 0, 2, 1, 60, 60000, 60, 1],
  };
  const provider = {
    keys: ['fq:{p}:wait', 'fq:{p}:jobs', 'kp:{p}:seq'],
    args: ['2', '2', '3', '0', 'lease'],
  };

  it('keeps the client half and the provider half separable (a cluster mode runs them as two steps)', () => {
    const { keys, args } = encodeAdmission(client, provider);
    expect(keys).toEqual([...client.keys, ...provider.keys]);
    expect(args.slice(0, 2)).toEqual(['2', '9']);
    const split = splitAdmission(keys, args);
    expect(split.client).toEqual({ keys: client.keys, args: client.args.map(String) });
    expect(split.provider).toEqual({ keys: provider.keys, args: provider.args });
  });

  it('decodes {client, provider}; an empty provider reply means the provider step did not run', () => {
    expect(decodeAdmission([[0, 123], []])).toEqual({ client: [0, 123], provider: null });
    expect(
      decodeAdmission([
        [1, 123],
        [1, 1, 1, 123],
      ]),
    ).toEqual({ client: [1, 123], provider: [1, 1, 1, 123] });
    expect(() => decodeAdmission([1, 123])).toThrow('malformed admission reply');
    expect(() => decodeAdmission(null)).toThrow('malformed admission reply');
  });
});
