import { badRequest, type Rejection, type Verdict } from '../rejection.js';

/**
 * An OpenAI chat/completions request as an Anthropic Messages request (docs/translation.md has the
 * table). Pure: the client's validated body in, the Anthropic body out, or a 400 naming the field
 * that cannot be carried — nothing is dropped that would change what the model is asked.
 */

/** `max_tokens` when the client sets neither `max_completion_tokens` nor `max_tokens` (Anthropic requires one). */
export const DEFAULT_MAX_TOKENS = 4096;

type Json = Record<string, unknown>;

/** An Anthropic content block (text, image, tool_use, tool_result). */
type Block = Json;

interface Turn {
  role: 'user' | 'assistant';
  content: string | Block[];
}

/** A translation refusal: the 400 the client gets. */
class Refused extends Error {
  constructor(readonly rejection: Rejection) {
    super(rejection.message);
  }
}

const unsupported = (param: string, message: string): Refused =>
  new Refused(badRequest(message, param, 'unsupported_parameter'));
const invalid = (param: string, message: string): Refused =>
  new Refused(badRequest(message, param, 'validation_failed'));

/**
 * Fields read and carried (or checked) below; every other field is refused (it might change what
 * the model is asked). Fields Anthropic has no use for and that change nothing the client relies on
 * are listed in IGNORED.
 */
const HANDLED = new Set([
  'model',
  'messages',
  'stream',
  'stream_options',
  'max_tokens',
  'max_completion_tokens',
  'temperature',
  'top_p',
  'top_k',
  'stop',
  'tools',
  'tool_choice',
  'parallel_tool_calls',
  'user',
  'safety_identifier',
  'n',
  'logprobs',
  'top_logprobs',
  'response_format',
  'modalities',
  'logit_bias',
]);

/**
 * Accepted and not sent: sampling hints Anthropic has no equivalent for (`seed`,
 * `presence_penalty`, `frequency_penalty`), OpenAI-side storage and caching hints (`store`,
 * `metadata`, `prompt_cache_key`, `service_tier`), and `prediction` (a latency hint; the answer is
 * the same without it).
 */
export const IGNORED = new Set([
  'seed',
  'presence_penalty',
  'frequency_penalty',
  'store',
  'metadata',
  'prompt_cache_key',
  'service_tier',
  'prediction',
]);

/** The Anthropic Messages body for a chat/completions body, or the 400 the client gets. */
export function chatToMessages(body: Json, stream: boolean): Verdict<Json> {
  try {
    return { ok: true, value: translate(body, stream) };
  } catch (err) {
    if (err instanceof Refused) return { ok: false, rejection: err.rejection };
    throw err;
  }
}

function translate(body: Json, stream: boolean): Json {
  for (const key of Object.keys(body)) {
    if (!HANDLED.has(key) && !IGNORED.has(key) && body[key] !== undefined)
      throw unsupported(key, `${key} is not supported for this model (served by an Anthropic provider)`);
  }
  refuseMeaningChanges(body);
  if (!Array.isArray(body.messages)) throw invalid('messages', 'messages must be a non-empty array');
  const { system, turns } = conversation(body.messages as unknown[]);
  const out: Json = { model: body.model, max_tokens: maxTokens(body) };
  if (system !== null) out.system = system;
  out.messages = turns;
  const temperature = body.temperature;
  if (temperature !== undefined && temperature !== null) {
    if (typeof temperature !== 'number' || !(temperature >= 0 && temperature <= 1))
      throw unsupported(
        'temperature',
        'temperature must be a number between 0 and 1 for this model (Anthropic accepts 0 to 1)',
      );
    out.temperature = temperature;
  }
  for (const key of ['top_p', 'top_k'] as const) {
    const v = body[key];
    if (v === undefined || v === null) continue;
    if (typeof v !== 'number' || v < 0) throw invalid(key, `${key} must be a non-negative number`);
    out[key] = v;
  }
  const stop = stopSequences(body.stop);
  if (stop) out.stop_sequences = stop;
  const tools = toolsOf(body.tools);
  if (tools) out.tools = tools;
  const choice = toolChoice(body.tool_choice, body.parallel_tool_calls, tools !== null);
  if (choice) out.tool_choice = choice;
  const user = body.safety_identifier ?? body.user;
  if (user !== undefined && user !== null) {
    const param = body.safety_identifier !== undefined ? 'safety_identifier' : 'user';
    if (typeof user !== 'string') throw invalid(param, `${param} must be a string`);
    if (user !== '') out.metadata = { user_id: user };
  }
  if (stream) out.stream = true;
  const options = body.stream_options;
  if (options !== undefined && options !== null && (typeof options !== 'object' || Array.isArray(options)))
    throw invalid('stream_options', 'stream_options must be an object');
  return out;
}

/** Fields whose every value but the default would change the answer's shape or meaning: refused. */
function refuseMeaningChanges(body: Json): void {
  const n = body.n;
  if (n !== undefined && n !== null && n !== 1)
    throw unsupported('n', 'n must be 1 for this model: Anthropic returns one choice per request');
  if (body.logprobs !== undefined && body.logprobs !== null && body.logprobs !== false)
    throw unsupported(
      'logprobs',
      'logprobs are not available for this model (served by an Anthropic provider)',
    );
  if (body.top_logprobs !== undefined && body.top_logprobs !== null)
    throw unsupported(
      'top_logprobs',
      'top_logprobs are not available for this model (served by an Anthropic provider)',
    );
  const format = body.response_format;
  if (format !== undefined && format !== null) {
    const type = typeof format === 'object' ? (format as Json).type : undefined;
    if (type !== 'text') {
      const what = typeof type === 'string' ? `response_format ${type}` : 'response_format';
      throw unsupported(
        'response_format',
        `${what} is not supported for this model: only {"type": "text"} (describe the JSON you want in the prompt, or use a tool)`,
      );
    }
  }
  const modalities = body.modalities;
  if (
    modalities !== undefined &&
    modalities !== null &&
    !(Array.isArray(modalities) && modalities.every((m) => m === 'text'))
  )
    throw unsupported('modalities', 'modalities other than ["text"] are not supported for this model');
  const bias = body.logit_bias;
  if (
    bias !== undefined &&
    bias !== null &&
    !(typeof bias === 'object' && !Array.isArray(bias) && Object.keys(bias).length === 0)
  )
    throw unsupported(
      'logit_bias',
      'logit_bias is not supported for this model (served by an Anthropic provider)',
    );
}

function maxTokens(body: Json): number {
  for (const key of ['max_completion_tokens', 'max_tokens'] as const) {
    const v = body[key];
    if (v === undefined || v === null) continue;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1)
      throw invalid(key, `${key} must be a positive integer`);
    return v;
  }
  return DEFAULT_MAX_TOKENS;
}

function stopSequences(stop: unknown): string[] | null {
  if (stop === undefined || stop === null) return null;
  if (typeof stop === 'string') return stop === '' ? null : [stop];
  if (Array.isArray(stop) && stop.every((s) => typeof s === 'string')) return stop.length ? stop : null;
  throw invalid('stop', 'stop must be a string or an array of strings');
}

function toolsOf(tools: unknown): Json[] | null {
  if (tools === undefined || tools === null) return null;
  if (!Array.isArray(tools)) throw invalid('tools', 'tools must be an array');
  if (tools.length === 0) return null;
  return tools.map((tool: unknown, i) => {
    const param = `tools[${i}]`;
    if (!isObject(tool)) throw invalid(param, `${param} must be an object`);
    if (tool.type !== 'function')
      throw unsupported(
        `${param}.type`,
        `${param}.type must be "function" for this model (only function tools are translated)`,
      );
    const fn = tool.function;
    if (!isObject(fn) || typeof fn.name !== 'string' || fn.name === '')
      throw invalid(`${param}.function.name`, `${param}.function.name must be a non-empty string`);
    const out: Json = { name: fn.name };
    if (typeof fn.description === 'string') out.description = fn.description;
    const parameters = fn.parameters ?? { type: 'object', properties: {} };
    if (!isObject(parameters))
      throw invalid(`${param}.function.parameters`, `${param}.function.parameters must be an object`);
    out.input_schema = parameters;
    return out;
  });
}

/** `hasTools`: parallel_tool_calls: false is carried only with tools (Anthropic refuses a tool_choice without them). */
function toolChoice(choice: unknown, parallel: unknown, hasTools: boolean): Json | null {
  let out: Json | null;
  if (choice === undefined || choice === null) out = null;
  else if (choice === 'auto') out = { type: 'auto' };
  else if (choice === 'none') out = { type: 'none' };
  else if (choice === 'required') out = { type: 'any' };
  else if (
    isObject(choice) &&
    choice.type === 'function' &&
    isObject(choice.function) &&
    typeof choice.function.name === 'string'
  )
    out = { type: 'tool', name: choice.function.name };
  else
    throw unsupported(
      'tool_choice',
      'tool_choice must be "auto", "none", "required" or {"type": "function", "function": {"name": …}} for this model',
    );
  if (parallel !== undefined && parallel !== null && typeof parallel !== 'boolean')
    throw invalid('parallel_tool_calls', 'parallel_tool_calls must be a boolean');
  if (parallel === false && hasTools && out?.type !== 'none')
    out = { ...(out ?? { type: 'auto' }), disable_parallel_tool_use: true };
  return out;
}

/** The system prompt (system and developer messages, joined) and the user/assistant turns. */
function conversation(messages: unknown[]): { system: string | null; turns: Turn[] } {
  const system: string[] = [];
  const turns: Turn[] = [];
  const push = (role: Turn['role'], content: string | Block[]): void => {
    const last = turns.at(-1);
    if (last && last.role === role) last.content = [...blocks(last.content), ...blocks(content)];
    else turns.push({ role, content });
  };
  messages.forEach((m, i) => {
    const param = `messages[${i}]`;
    if (!isObject(m)) throw invalid(param, `${param} must be an object`);
    const message = m;
    switch (message.role) {
      case 'system':
      case 'developer':
        system.push(systemText(message.content, `${param}.content`));
        return;
      case 'user':
        refuseFields(message, param, ['audio']);
        push('user', userContent(message.content, `${param}.content`));
        return;
      case 'assistant': {
        refuseFields(message, param, ['audio', 'function_call']);
        const content = assistantContent(message, param);
        if (content.length > 0) push('assistant', content);
        return;
      }
      case 'tool':
        push('user', [toolResult(message, param)]);
        return;
      case 'function':
        throw unsupported(`${param}.role`, `${param}.role "function" is deprecated: use tool messages`);
      default:
        throw invalid(
          `${param}.role`,
          `${param}.role must be one of system, developer, user, assistant, tool`,
        );
    }
  });
  if (turns.length === 0)
    throw invalid('messages', 'messages must contain at least one user or assistant message');
  return { system: system.length > 0 ? system.join('\n\n') : null, turns };
}

function refuseFields(message: Json, param: string, fields: string[]): void {
  for (const field of fields)
    if (message[field] !== undefined && message[field] !== null)
      throw unsupported(`${param}.${field}`, `${param}.${field} is not supported for this model`);
}

function blocks(content: string | Block[]): Block[] {
  return typeof content === 'string' ? [{ type: 'text', text: content }] : content;
}

/** Text of a system/developer message: a string or text parts (joined by blank lines). */
function systemText(content: unknown, param: string): string {
  if (typeof content === 'string') return content;
  if (Array.isArray(content))
    return content
      .map((part: unknown, i) => {
        if (isObject(part) && part.type === 'text' && typeof part.text === 'string') return part.text;
        throw invalid(`${param}[${i}]`, `${param}[${i}] must be a text part in a system message`);
      })
      .join('\n\n');
  throw invalid(param, `${param} must be a string or an array of text parts`);
}

function userContent(content: unknown, param: string): string | Block[] {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) throw invalid(param, `${param} must be a string or an array of content parts`);
  return content.map((part: unknown, i) => {
    const at = `${param}[${i}]`;
    if (!isObject(part)) throw invalid(at, `${at} must be an object`);
    if (part.type === 'text') {
      if (typeof part.text !== 'string') throw invalid(`${at}.text`, `${at}.text must be a string`);
      return { type: 'text', text: part.text };
    }
    if (part.type === 'image_url') return image(part.image_url, `${at}.image_url`);
    throw unsupported(
      `${at}.type`,
      `${at}.type ${JSON.stringify(part.type)} is not supported for this model (text and image_url are)`,
    );
  });
}

/** An image_url part: a data: URL as a base64 image, an http(s) URL as a url image. */
function image(value: unknown, param: string): Block {
  const url = isObject(value) ? value.url : undefined;
  if (typeof url !== 'string') throw invalid(`${param}.url`, `${param}.url must be a string`);
  const data = /^data:([^;,]+);base64,(.*)$/s.exec(url);
  if (data) return { type: 'image', source: { type: 'base64', media_type: data[1], data: data[2] } };
  if (/^https?:\/\//i.test(url)) return { type: 'image', source: { type: 'url', url } };
  throw unsupported(`${param}.url`, `${param}.url must be an http(s) URL or a base64 data: URL`);
}

/** An assistant message's blocks: its text (empty text dropped: Anthropic refuses it), then its tool calls. */
function assistantContent(message: Json, param: string): Block[] {
  const out: Block[] = [];
  const content = message.content;
  if (typeof content === 'string') {
    if (content !== '') out.push({ type: 'text', text: content });
  } else if (Array.isArray(content)) {
    content.forEach((part: unknown, i) => {
      const at = `${param}.content[${i}]`;
      if (isObject(part) && part.type === 'text' && typeof part.text === 'string') {
        if (part.text !== '') out.push({ type: 'text', text: part.text });
      } else if (isObject(part) && part.type === 'refusal' && typeof part.refusal === 'string') {
        if (part.refusal !== '') out.push({ type: 'text', text: part.refusal });
      } else throw invalid(at, `${at} must be a text or refusal part`);
    });
  } else if (content !== undefined && content !== null)
    throw invalid(`${param}.content`, `${param}.content must be a string, an array of text parts or null`);
  const calls = message.tool_calls;
  if (calls === undefined || calls === null) return out;
  if (!Array.isArray(calls)) throw invalid(`${param}.tool_calls`, `${param}.tool_calls must be an array`);
  calls.forEach((call: unknown, i) => {
    const at = `${param}.tool_calls[${i}]`;
    if (!isObject(call) || typeof call.id !== 'string')
      throw invalid(`${at}.id`, `${at}.id must be a string`);
    if (call.type !== undefined && call.type !== 'function')
      throw unsupported(`${at}.type`, `${at}.type must be "function"`);
    const fn = call.function;
    if (!isObject(fn) || typeof fn.name !== 'string')
      throw invalid(`${at}.function.name`, `${at}.function.name must be a string`);
    out.push({
      type: 'tool_use',
      id: call.id,
      name: fn.name,
      input: toolInput(fn.arguments, `${at}.function.arguments`),
    });
  });
  return out;
}

/** A tool call's `arguments` (a JSON string) as the tool_use `input` object. */
function toolInput(args: unknown, param: string): Json {
  if (args === undefined || args === null || args === '') return {};
  if (typeof args !== 'string') throw invalid(param, `${param} must be a JSON string`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(args);
  } catch {
    throw invalid(param, `${param} is not valid JSON`);
  }
  if (!isObject(parsed)) throw invalid(param, `${param} must be a JSON object`);
  return parsed;
}

function toolResult(message: Json, param: string): Block {
  if (typeof message.tool_call_id !== 'string' || message.tool_call_id === '')
    throw invalid(`${param}.tool_call_id`, `${param}.tool_call_id must be a non-empty string`);
  const content = message.content;
  const block: Block = { type: 'tool_result', tool_use_id: message.tool_call_id };
  if (typeof content === 'string') block.content = content;
  else if (Array.isArray(content))
    block.content = content.map((part: unknown, i) => {
      const at = `${param}.content[${i}]`;
      if (isObject(part) && part.type === 'text' && typeof part.text === 'string')
        return { type: 'text', text: part.text };
      throw invalid(at, `${at} must be a text part`);
    });
  else if (content !== undefined && content !== null)
    throw invalid(`${param}.content`, `${param}.content must be a string or an array of text parts`);
  return block;
}

function isObject(v: unknown): v is Json {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}
