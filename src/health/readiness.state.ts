import { Injectable } from '@nestjs/common';

/** Flipped by the shutdown sequence so readiness answers 503 while in-flight requests drain. */
@Injectable()
export class ReadinessState {
  private draining = false;

  get isDraining(): boolean {
    return this.draining;
  }

  beginDraining(): void {
    this.draining = true;
  }
}
