import { ApiProperty } from '@nestjs/swagger';

export class ErrorDetailDto {
  @ApiProperty({
    enum: [
      'invalid_request_error',
      'authentication_error',
      'permission_error',
      'rate_limit_error',
      'queue_full_error',
      'upstream_error',
      'upstream_timeout_error',
      'service_unavailable_error',
      'internal_error',
    ],
    example: 'invalid_request_error',
  })
  type: string;

  @ApiProperty({ example: 'validation_failed', description: 'Stable machine-readable code' })
  code: string;

  @ApiProperty({
    example: 'name must be a string; property role should not exist',
    description: 'Every problem, for humans',
  })
  message: string;

  @ApiProperty({
    example: 'name',
    nullable: true,
    type: String,
    description: 'The (first) offending field, or null',
  })
  param: string | null;

  @ApiProperty({
    example: '5d0f3c7e-7b1a-4f3e-9a51-2b8f1c0e6d42',
    description: 'Same as the x-request-id header',
  })
  request_id: string;
}

/** CONTRACT.md's one error shape, shared by every route. */
export class ErrorResponseDto {
  @ApiProperty({ type: ErrorDetailDto })
  error: ErrorDetailDto;
}
