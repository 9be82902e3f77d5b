import { ValidationPipe, type ArgumentMetadata, type ValidationError } from '@nestjs/common';
import { ValidateIf } from 'class-validator';
import { ApiError } from './api-error.js';
import { unsafeInputProblems } from './input-safety.js';

/** Present → validated; absent → skipped; `null` is refused (the field is not nullable). */
export const OptionalNotNull = () => ValidateIf((_o: unknown, v: unknown) => v !== undefined);

interface Problem {
  path: string;
  message: string;
}

function flatten(errors: ValidationError[], parent = ''): Problem[] {
  const out: Problem[] = [];
  for (const e of errors) {
    const path = parent
      ? /^\d+$/.test(e.property)
        ? `${parent}[${e.property}]`
        : `${parent}.${e.property}`
      : e.property;
    for (const text of Object.values(e.constraints ?? {})) {
      // class-validator writes "property x should not exist" / "x must be ..." with the bare name.
      out.push({
        path,
        message: text.replace(new RegExp(`^(property )?${escape(e.property)}\\b`), `$1${path}`),
      });
    }
    if (e.children?.length) out.push(...flatten(e.children, path));
  }
  return out;
}

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Validation problems → 400 naming the (first) field in `param` and listing every problem in `message`. */
export function validationErrorFrom(errors: ValidationError[]): ApiError {
  const problems = flatten(errors);
  const first = problems[0]?.path ?? null;
  const message = problems.length > 0 ? problems.map((p) => p.message).join('; ') : 'Invalid request';
  return ApiError.badRequest(message, first, 'validation_failed');
}

/**
 * The DTO validation every body, query and path parameter goes through, plus one rule no DTO has to
 * repeat: no string Postgres can't store (NUL, unpaired surrogates; as values or as keys) and no
 * number beyond ±2^53 − 1, anywhere in the validated input (src/common/input-safety.ts).
 */
export class SafeInputValidationPipe extends ValidationPipe {
  override async transform(value: unknown, metadata: ArgumentMetadata): Promise<unknown> {
    if (metadata.type === 'custom') return super.transform(value, metadata);
    // Before the DTO's validators: some of them throw on an unpaired surrogate (validator.js's
    // isEmail runs encodeURI), which would be a 500.
    refuseUnsafe(value, metadata);
    const result: unknown = await super.transform(value, metadata);
    // And after: a query string's "99999999999999999999" is a number only once transformed.
    refuseUnsafe(result, metadata);
    return result;
  }
}

function refuseUnsafe(value: unknown, metadata: ArgumentMetadata): void {
  const problems = unsafeInputProblems(value, metadata.data ?? '');
  if (problems.length > 0) {
    throw ApiError.badRequest(
      problems.map((p) => p.message).join('; '),
      problems[0]!.path || null,
      'validation_failed',
    );
  }
}

export function createValidationPipe(): ValidationPipe {
  return new SafeInputValidationPipe({
    whitelist: true,
    forbidNonWhitelisted: true,
    transform: true,
    stopAtFirstError: false,
    exceptionFactory: (errors) => validationErrorFrom(errors),
  });
}
