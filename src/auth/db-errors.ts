/** The name of the unique index a write violated (Postgres 23505), or null for any other error. */
export function uniqueViolation(err: unknown): string | null {
  const driver =
    (err as { driverError?: { code?: string; constraint?: string } } | null)?.driverError ??
    (err as { code?: string; constraint?: string } | null);
  if (driver && driver.code === '23505') return driver.constraint ?? '';
  return null;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Ids reach Postgres `uuid` columns only when they are UUIDs (a cast error would be a 500). */
export function isUuid(value: string): boolean {
  return UUID.test(value);
}
