import type { LoggerService } from '@nestjs/common';

/**
 * Nest's own start-up chatter: "Starting Nest application...", one "X dependencies initialized" per
 * module, one line per controller and per route, "Nest application successfully started" — about
 * 90 lines before the banner. They are logged at debug level (LOG_LEVEL=debug shows them);
 * their warnings and errors are untouched.
 */
export const FRAMEWORK_CONTEXTS: ReadonlySet<string> = new Set([
  'NestFactory',
  'InstanceLoader',
  'RoutesResolver',
  'RouterExplorer',
  'NestApplication',
]);

/** True for an info line written by Nest itself (its context is the last argument). */
export function isFrameworkInfo(optionalParams: unknown[]): boolean {
  const context = optionalParams[optionalParams.length - 1];
  return typeof context === 'string' && FRAMEWORK_CONTEXTS.has(context);
}

/** The application's logger (nestjs-pino's) with Nest's own info lines moved to debug. */
export class QuietFrameworkLogger implements LoggerService {
  constructor(private readonly inner: LoggerService) {}

  log(message: unknown, ...optionalParams: unknown[]): void {
    if (isFrameworkInfo(optionalParams)) this.debug(message, ...optionalParams);
    else this.inner.log(message, ...optionalParams);
  }

  error(message: unknown, ...optionalParams: unknown[]): void {
    this.inner.error(message, ...optionalParams);
  }

  warn(message: unknown, ...optionalParams: unknown[]): void {
    this.inner.warn(message, ...optionalParams);
  }

  debug(message: unknown, ...optionalParams: unknown[]): void {
    this.inner.debug?.(message, ...optionalParams);
  }

  verbose(message: unknown, ...optionalParams: unknown[]): void {
    this.inner.verbose?.(message, ...optionalParams);
  }

  fatal(message: unknown, ...optionalParams: unknown[]): void {
    if (this.inner.fatal) this.inner.fatal(message, ...optionalParams);
    else this.inner.error(message, ...optionalParams);
  }
}
