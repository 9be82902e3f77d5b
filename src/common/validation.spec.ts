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
});
