// Types for scripts/build-if-stale.mjs (imported by test/unit/build-if-stale.spec.ts).
export declare const STAMP_FILE: string;
export declare const BUILD_INFO: string;
export declare const ENTRY: string;
export declare function fileStamp(stat: { size: number; mtimeMs: number }): string;
export declare function collectInputs(root: string): Record<string, string>;
export declare function staleReason(
  saved: { files: Record<string, string> } | null,
  current: Record<string, string>,
  hasEntry: boolean,
): string | null;
export declare function buildIfStale(
  root: string,
  options?: { force?: boolean; log?: (line: string) => void },
): number;
