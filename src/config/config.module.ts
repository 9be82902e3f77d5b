import { DynamicModule, Global, Module } from '@nestjs/common';
import { StartupNotes } from '../common/startup-notes.js';
import type { AppConfig } from './app-config.js';

/** Injection token for the validated AppConfig: `@Inject(APP_CONFIG) private readonly config: AppConfig`. */
export const APP_CONFIG = Symbol('APP_CONFIG');

@Global()
@Module({})
export class ConfigModule {
  /** The configuration is loaded and validated before Nest starts (see main.ts), then handed in here. */
  static forRoot(config: AppConfig): DynamicModule {
    return {
      module: ConfigModule,
      // StartupNotes rides along in this global module so any feature can add a banner line.
      providers: [{ provide: APP_CONFIG, useValue: config }, StartupNotes],
      exports: [APP_CONFIG, StartupNotes],
    };
  }
}
