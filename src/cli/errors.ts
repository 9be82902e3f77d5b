/** Exit codes of the CLI: 0 success, 1 the gateway refused or could not be reached, 2 bad usage. */
export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

/** The command line is wrong (unknown command or flag, missing or bad value): exit 2. */
export class UsageError extends Error {
  /** The command whose help to point at (e.g. "keys create"), or null for the top level. */
  constructor(
    message: string,
    readonly command: string | null = null,
  ) {
    super(message);
    this.name = 'UsageError';
  }
}

/** The gateway answered with an error (its JSON error shape): exit 1. */
export class GatewayError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly type: string | null,
    readonly code: string | null,
    readonly param: string | null,
    readonly requestId: string | null,
  ) {
    super(message);
    this.name = 'GatewayError';
  }

  /** One line of details under the message: status, type/code, field, request id. */
  details(): string {
    const parts = [`HTTP ${this.status}`];
    if (this.type) parts.push(this.code ? `${this.type} (${this.code})` : this.type);
    if (this.param) parts.push(`field ${this.param}`);
    if (this.requestId) parts.push(`request id ${this.requestId}`);
    return parts.join(', ');
  }
}

/** The gateway could not be reached or answered something that is not Floodgate's API: exit 1. */
export class ConnectionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConnectionError';
  }
}

/** Anything else that makes a command fail (e.g. a provider name that matches nothing): exit 1. */
export class CommandError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CommandError';
  }
}
