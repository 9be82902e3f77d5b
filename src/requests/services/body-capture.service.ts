import { Inject, Injectable } from '@nestjs/common';
import type { AppConfig } from '../../config/app-config.js';
import { APP_CONFIG } from '../../config/config.module.js';
import { capUtf8, redactSecrets } from '../domain/redact-secrets.js';

/** What request_bodies stores for one request: redacted, each body capped. */
export interface StoredBodies {
  requestBody: string | null;
  responseBody: string | null;
  /** Either body was cut at BODY_CAPTURE_MAX_BYTES. */
  truncated: boolean;
}

/**
 * Raw text kept past the cap before redaction, so a secret that straddles the cap is still whole when
 * it is redacted (and then cut away or replaced), never stored as a readable prefix.
 */
const MARGIN = 1024;

/**
 * One request's bodies while it is relayed (made only when capture is on for its key or route: a
 * request without capture makes none). The response is appended as it is relayed (the JSON text, or
 * each SSE chunk as written to the client) and kept only up to the cap plus a margin: a long stream
 * costs bounded memory. `finish` redacts and caps, once.
 */
export class CapturedBodies {
  private response: string | null = null;
  private responseCut = false;
  private done: StoredBodies | null = null;

  constructor(
    private readonly request: string | null,
    private readonly maxBytes: number,
  ) {}

  /** Relayed response text (UTF-16 length ≤ UTF-8 bytes: keeping maxBytes + MARGIN units is enough). */
  add(text: string): void {
    const keep = this.maxBytes + MARGIN;
    const have = this.response?.length ?? 0;
    if (have >= keep) {
      if (text.length > 0) this.responseCut = true;
      return;
    }
    const part = text.length > keep - have ? text.slice(0, keep - have) : text;
    if (part.length < text.length) this.responseCut = true;
    this.response = have === 0 ? part : this.response + part;
  }

  finish(): StoredBodies {
    if (this.done) return this.done;
    const req = this.request === null ? null : capUtf8(redactSecrets(this.request), this.maxBytes);
    const res = this.response === null ? null : capUtf8(redactSecrets(this.response), this.maxBytes);
    this.done = {
      requestBody: req?.text ?? null,
      responseBody: res?.text ?? null,
      truncated: (req?.truncated ?? false) || (res?.truncated ?? false) || this.responseCut,
    };
    return this.done;
  }
}

/**
 * Body capture (docs/requests.md "Body capture"): off unless the client's API key or the request's
 * route has `capture_bodies`. The relay asks `start` only when one of them has it; the bodies ride
 * the request-log row into the same batch (never a write of their own).
 */
@Injectable()
export class BodyCaptureService {
  private readonly maxBytes: number;

  constructor(@Inject(APP_CONFIG) config: AppConfig) {
    this.maxBytes = config.requests.bodyCaptureMaxBytes;
  }

  /** The request's raw JSON text: only its first maxBytes + MARGIN characters are kept. */
  start(requestText: string | null | undefined): CapturedBodies {
    const keep = this.maxBytes + MARGIN;
    const text = requestText ?? null;
    return new CapturedBodies(
      text !== null && text.length > keep ? text.slice(0, keep) : text,
      this.maxBytes,
    );
  }
}
