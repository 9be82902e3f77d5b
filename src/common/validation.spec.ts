import 'reflect-metadata';
import { Type } from 'class-transformer';
import { IsInt, IsOptional, IsString, Min, ValidateNested } from 'class-validator';
import { describe, expect, it } from 'vitest';
import { ApiError } from './api-error.js';
import { createValidationPipe } from './validation.js';

class Settings {
  @IsInt()
  @Min(1)
  rpm: number;
}

class CreateThing {
  @IsString()
  name: string;

  @IsOptional()
  @ValidateNested()
  @Type(() => Settings)
  settings?: Settings;
}

async function validate(body: unknown): Promise<ApiError | CreateThing> {
  try {
    return (await createValidationPipe().transform(body, {
      type: 'body',
      metatype: CreateThing,
    })) as CreateThing;
  } catch (err) {
    return err as ApiError;
  }
}

describe('validation pipe', () => {
  it('passes a valid body through, transformed', async () => {
    const out = await validate({ name: 'a', settings: { rpm: 5 } });
    expect(out).toBeInstanceOf(CreateThing);
  });

  it('rejects unknown top-level fields with 400 naming the field', async () => {
    const err = await validate({ name: 'a', role: 'admin' });
    expect(err).toBeInstanceOf(ApiError);
    expect(err).toMatchObject({
      status: 400,
      type: 'invalid_request_error',
      code: 'validation_failed',
      param: 'role',
    });
    expect((err as ApiError).message).toBe('property role should not exist');
  });

  it('rejects unknown nested fields and names the nested path, listing every problem', async () => {
    const err = (await validate({ name: 3, settings: { rpm: 0, owner_id: 'x' } })) as ApiError;
    expect(err.param).toBe('name');
    expect(err.message).toContain('name must be a string');
    expect(err.message).toContain('settings.rpm must not be less than 1');
    expect(err.message).toContain('property settings.owner_id should not exist');
  });

  it('refuses strings Postgres cannot store and numbers beyond 2^53, naming the field', async () => {
    const nul = (await validate({ name: 'a\u0000b' })) as ApiError;
    expect(nul).toMatchObject({ status: 400, code: 'validation_failed', param: 'name' });
    expect(nul.message).toBe('name must not contain a NUL character (\\u0000)');
    const surrogate = (await validate({ name: 'ok', settings: { rpm: 1, ['k\udc00']: 1 } })) as ApiError;
    expect(surrogate).toMatchObject({ status: 400, param: 'settings' });
    const huge = (await validate({ name: 'ok', settings: { rpm: 1e20 } })) as ApiError;
    expect(huge).toMatchObject({ status: 400, param: 'settings.rpm' });
    expect(huge.message).toContain('settings.rpm must be between');
  });

  it('checks query strings once transformed and path parameters as they are', async () => {
    const pipe = createValidationPipe();
    const param = await pipe
      .transform('abc\u0000', { type: 'param', data: 'id', metatype: String })
      .catch((e: unknown) => e);
    expect(param).toMatchObject({ status: 400, param: 'id' });
    // A well-formed pair (an emoji) is fine.
    await expect(
      pipe.transform('\ud83d\ude00', { type: 'param', data: 'id', metatype: String }),
    ).resolves.toBe('\ud83d\ude00');
  });
});
