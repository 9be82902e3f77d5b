import { ValidationPipe, type ValidationError } from '@nestjs/common';
import { ApiError } from './api-error.js';

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

export function createValidationPipe(): ValidationPipe {
  return new ValidationPipe({
    whitelist: true,
    forbidNonWhitelisted: true,
    transform: true,
    stopAtFirstError: false,
    exceptionFactory: (errors) => validationErrorFrom(errors),
  });
}
