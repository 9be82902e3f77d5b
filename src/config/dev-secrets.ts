import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export interface DevSecrets {
  generatedEncryptionKeys?: string;
  /** Human sentences for the start-up log (never the secret itself). */
  warnings: string[];
}

const FILE = 'secrets.json';

/**
 * Development convenience: secrets that production must be given are generated once into
 * DATA_DIR/secrets.json (mode 0600) so `npm start` works with no env and restarts can still decrypt
 * what they stored. With DATA_DIR=:memory: they live for the process only.
 */
export async function resolveDevSecrets(env: Record<string, string | undefined>): Promise<DevSecrets> {
  const nodeEnv = env.NODE_ENV?.trim() || 'development';
  if (nodeEnv === 'production' || env.ENCRYPTION_KEYS?.trim()) return { warnings: [] };
  const dataDir = env.DATA_DIR?.trim() || './.data';
  const fresh = () => `dev1:${randomBytes(32).toString('base64')}`;
  if (dataDir === ':memory:') {
    return {
      generatedEncryptionKeys: fresh(),
      warnings: [
        'ENCRYPTION_KEYS is not set: using a key generated for this process only (DATA_DIR=:memory:)',
      ],
    };
  }
  const path = join(dataDir, FILE);
  try {
    const stored = JSON.parse(await readFile(path, 'utf8')) as { ENCRYPTION_KEYS?: string };
    if (stored.ENCRYPTION_KEYS) return { generatedEncryptionKeys: stored.ENCRYPTION_KEYS, warnings: [] };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const value = fresh();
  await mkdir(dataDir, { recursive: true });
  await writeFile(path, JSON.stringify({ ENCRYPTION_KEYS: value }, null, 2) + '\n', { mode: 0o600 });
  await chmod(path, 0o600);
  return {
    generatedEncryptionKeys: value,
    warnings: [
      `ENCRYPTION_KEYS is not set: generated one into ${path} (mode 0600). Set ENCRYPTION_KEYS yourself before production.`,
    ],
  };
}
