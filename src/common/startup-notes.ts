import { Injectable } from '@nestjs/common';

/**
 * Lines modules want in the start-up banner (e.g. a generated admin key, shown exactly once).
 * Printed by main.ts after the server listens, then cleared.
 */
@Injectable()
export class StartupNotes {
  private readonly notes: { title: string; lines: string[] }[] = [];

  add(title: string, lines: string[]): void {
    this.notes.push({ title, lines });
  }

  drain(): { title: string; lines: string[] }[] {
    return this.notes.splice(0, this.notes.length);
  }
}
