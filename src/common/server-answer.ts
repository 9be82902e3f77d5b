import type { ServerResponse } from 'node:http';

/**
 * An answer written straight to the socket, outside Fastify (Node's request timeout: 408), so the
 * request's reply never finishes. The request observer reads it to log what the client was told
 * instead of mistaking the closed connection for a client that went away (499).
 */
export interface ServerAnswer {
  status: number;
  type: string;
  code: string;
}

const ANSWER = Symbol('floodgate.serverAnswer');

type Marked = ServerResponse & { [ANSWER]?: ServerAnswer };

export function markServerAnswer(response: ServerResponse, answer: ServerAnswer): void {
  (response as Marked)[ANSWER] = answer;
}

export function serverAnswerOf(response: ServerResponse): ServerAnswer | undefined {
  return (response as Marked)[ANSWER];
}
