import { SetMetadata } from '@nestjs/common';

export const IS_PUBLIC = 'floodgate:public';

/** Marks an infrastructure route (health, metrics, docs) as needing no credentials and no rate limit. */
export const Public = (): MethodDecorator & ClassDecorator => SetMetadata(IS_PUBLIC, true);
