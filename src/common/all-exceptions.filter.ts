import { ArgumentsHost, Catch, ExceptionFilter, Logger } from '@nestjs/common';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { errorBodyFor, toErrorResponse } from './error-response.js';

/** Every failure on every route answers with the one error shape; 5xx never carry a stack or detail. */
@Catch()
export class AllExceptionsFilter implements ExceptionFilter {
  private readonly logger = new Logger('Errors');

  catch(exception: unknown, host: ArgumentsHost): void {
    const http = host.switchToHttp();
    const request = http.getRequest<FastifyRequest>();
    const reply = http.getResponse<FastifyReply>();
    // A handler was reached (HandlerContextGuard let it through): its request log line names what it threw.
    if (request.fgHandler !== null) request.fgError = exception;
    sendError(reply, request, exception, this.logger);
  }
}

export function sendError(
  reply: FastifyReply,
  request: FastifyRequest,
  exception: unknown,
  logger: Pick<Logger, 'error'>,
): void {
  const response = toErrorResponse(exception, String(request.id));
  if (response.unexpected) {
    logger.error(
      { err: exception, request_id: request.id, route: request.routeOptions?.url },
      'unhandled error answered with 500',
    );
  }
  if (reply.sent || reply.raw.headersSent) {
    // A stream already started: the only honest thing left is to end it.
    reply.raw.end();
    return;
  }
  void reply.status(response.status).headers(response.headers).send(errorBodyFor(request.url, response.body));
}
