/**
 * What API a provider speaks: `openai` (OpenAI-compatible: chat/completions, completions,
 * embeddings, responses; `Authorization: Bearer`) or `anthropic` (the Anthropic Messages API:
 * `/messages`, `x-api-key` + `anthropic-version`). The relay picks how to send each request and read
 * its answer by it (src/relay/domain/exchange.ts).
 */
export const PROVIDER_KINDS = ['openai', 'anthropic'] as const;
export type ProviderKind = (typeof PROVIDER_KINDS)[number];
