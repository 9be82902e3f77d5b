export interface Writer {
  write(chunk: string): unknown;
}

/** Where a command prints: results on stdout, warnings and errors on stderr. */
export class Output {
  constructor(
    readonly stdout: Writer,
    readonly stderr: Writer,
  ) {}

  line(text = ''): void {
    this.stdout.write(`${text}\n`);
  }

  json(value: unknown): void {
    this.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
  }

  warn(text: string): void {
    this.stderr.write(`floodgate: warning: ${text}\n`);
  }

  table<T extends object>(columns: Column<T>[], rows: T[], empty = '(none)'): void {
    if (rows.length === 0) {
      this.line(empty);
      return;
    }
    for (const line of renderTable(columns, rows)) this.line(line);
  }

  /** `label  value` lines, labels aligned. */
  record(pairs: [string, unknown][]): void {
    const width = Math.max(...pairs.map(([label]) => label.length));
    for (const [label, value] of pairs) this.line(`  ${label.padEnd(width)}  ${cell(value)}`);
  }
}

export interface Column<T extends object> {
  header: string;
  /** Field name or a function of the row. */
  value: (keyof T & string) | ((row: T) => unknown);
  align?: 'left' | 'right';
}

/** A plain text table: upper-case headers, columns separated by two spaces, no trailing blanks. */
export function renderTable<T extends object>(columns: Column<T>[], rows: T[]): string[] {
  const cells = rows.map((row) =>
    columns.map((c) => cell(typeof c.value === 'function' ? c.value(row) : row[c.value])),
  );
  const widths = columns.map((c, i) => Math.max(c.header.length, ...cells.map((r) => r[i]!.length)));
  const render = (values: string[]) =>
    values
      .map((v, i) => (columns[i]!.align === 'right' ? v.padStart(widths[i]!) : v.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [render(columns.map((c) => c.header)), ...cells.map(render)];
}

/** How one value reads in a table: null/undefined → "-", arrays joined, no line breaks. */
export function cell(value: unknown): string {
  if (value === null || value === undefined || value === '') return '-';
  if (Array.isArray(value)) return value.length === 0 ? '-' : value.map(cell).join(',');
  if (typeof value === 'object') return JSON.stringify(value);
  return String(value as string | number | boolean).replace(/\s+/g, ' ');
}

/** "2025-11-22T10:00:05.000Z" → "2025-11-22 10:00:05Z" (tables stay narrow and unambiguous). */
export function shortTime(iso: unknown): string | null {
  if (typeof iso !== 'string' || iso.length === 0) return null;
  return iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

/** 5400 → "1h 30m", 42 → "42s". */
export function duration(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  const d = Math.floor(s / 86_400);
  const h = Math.floor((s % 86_400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  const parts: string[] = [];
  if (d) parts.push(`${d}d`);
  if (h) parts.push(`${h}h`);
  if (m && !d) parts.push(`${m}m`);
  if (parts.length === 0 || (!d && !h && s % 60 && s < 3600)) parts.push(`${s % 60}s`);
  return parts.join(' ');
}
