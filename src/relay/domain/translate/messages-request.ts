import { badRequest, type Rejection, type Verdict } from '../rejection.js';

/**
 * An Anthropic Messages request as an OpenAI chat/completions request, for `/v1/messages` on a model
 * an OpenAI-compatible provider serves (docs/translation.md, "The other way"). Pure: the client's
 * validated body in, the chat body out, or a 400 naming what cannot be carried.
 */

type Json = Record<string, unknown>;

class Refused extends Error {
  constructor(readonly rejection: Rejection) {
    super(rejection.message);
  }
}

const unsupported = (param: string, message: string): Refused =>
  new Refused(badRequest(message, param, 'unsupported_parameter'));
const invalid = (param: string, message: string): Refused =>
  new Refused(badRequest(message, param, 'validation_failed'));

const HANDLED = new Set([
  'model',
  'messages',
  'system',
  'max_tokens',
  'stream',
  'temperature',
  'top_p',
  'top_k',
  'stop_sequences',
  'tools',
  'tool_choice',
  'metadata',
]);

/**
 * Accepted and not sent: `thinking` (the answer simply has no thinking blocks, a valid Messages
 * answer) and `service_tier` (an Anthropic capacity hint).
 */
export const MESSAGES_IGNORED = new Set(['thinking', 'service_tier']);

/** The chat/completions body for a Messages body, or the 400 the client gets. */
export function messagesToChat(body: Json, stream: boolean): Verdict<Json> {
  try {
    return { ok: true, value: translate(body, stream) };
  } catch (err) {
    if (err instanceof Refused) return { ok: false, rejection: err.rejection };
    throw err;
  }
}

function translate(body: Json, stream: boolean): Json {
  for (const key of Object.keys(body))
    if (!HANDLED.has(key) && !MESSAGES_IGNORED.has(key) && body[key] !== undefined)
      throw unsupported(
        key,
        `${key} is not supported for this model (served by an OpenAI-compatible provider)`,
      );
  const messages: Json[] = [];
  const system = systemText(body.system);
  if (system !== null) messages.push({ role: 'system', content: system });
  if (!Array.isArray(body.messages)) throw invalid('messages', 'messages must be a non-empty array');
  (body.messages as unknown[]).forEach((m, i) => {
    if (!isObject(m)) throw invalid(`messages[${i}]`, `messages[${i}] must be an object`);
    messages.push(...turn(m, `messages[${i}]`));
  });
  const out: Json = { model: body.model, messages, max_tokens: body.max_tokens };
  for (const key of ['temperature', 'top_p', 'top_k'] as const) {
    const v = body[key];
    if (v === undefined || v === null) continue;
    if (typeof v !== 'number' || v < 0) throw invalid(key, `${key} must be a non-negative number`);
    out[key] = v;
  }
  const stop = body.stop_sequences;
  if (stop !== undefined && stop !== null) {
    if (!Array.isArray(stop) || !stop.every((s) => typeof s === 'string'))
      throw invalid('stop_sequences', 'stop_sequences must be an array of strings');
    if (stop.length > 0) out.stop = stop;
  }
  const tools = toolsOf(body.tools);
  if (tools) out.tools = tools;
  const choice = body.tool_choice;
  if (choice !== undefined && choice !== null) {
    if (!isObject(choice)) throw invalid('tool_choice', 'tool_choice must be an object');
    if (choice.type === 'auto') out.tool_choice = 'auto';
    else if (choice.type === 'any') out.tool_choice = 'required';
    else if (choice.type === 'none') out.tool_choice = 'none';
    else if (choice.type === 'tool' && typeof choice.name === 'string')
      out.tool_choice = { type: 'function', function: { name: choice.name } };
    else throw invalid('tool_choice.type', 'tool_choice.type must be auto, any, tool (with a name) or none');
    if (choice.disable_parallel_tool_use === true && tools) out.parallel_tool_calls = false;
  }
  const metadata = body.metadata;
  if (metadata !== undefined && metadata !== null) {
    if (!isObject(metadata)) throw invalid('metadata', 'metadata must be an object');
    if (typeof metadata.user_id === 'string' && metadata.user_id !== '') out.user = metadata.user_id;
  }
  if (stream) {
    out.stream = true;
    out.stream_options = { include_usage: true };
  }
  return out;
}

function systemText(system: unknown): string | null {
  if (system === undefined || system === null) return null;
  if (typeof system === 'string') return system === '' ? null : system;
  if (Array.isArray(system))
    return system
      .map((block: unknown, i) => {
        if (isObject(block) && block.type === 'text' && typeof block.text === 'string') return block.text;
        throw invalid(`system[${i}]`, `system[${i}] must be a text block`);
      })
      .join('\n\n');
  throw invalid('system', 'system must be a string or an array of text blocks');
}

/** One Messages turn as chat messages: a user turn's tool_results become `tool` messages (first, in order). */
function turn(message: Json, param: string): Json[] {
  const role = message.role;
  if (role !== 'user' && role !== 'assistant')
    throw invalid(`${param}.role`, `${param}.role must be user or assistant`);
  const content = message.content;
  if (typeof content === 'string') return [{ role, content }];
  if (!Array.isArray(content))
    throw invalid(`${param}.content`, `${param}.content must be a string or an array of content blocks`);
  if (role === 'assistant') return [assistant(content, param)];
  const out: Json[] = [];
  const parts: Json[] = [];
  content.forEach((block: unknown, i) => {
    const at = `${param}.content[${i}]`;
    if (!isObject(block)) throw invalid(at, `${at} must be an object`);
    switch (block.type) {
      case 'text':
        if (typeof block.text !== 'string') throw invalid(`${at}.text`, `${at}.text must be a string`);
        parts.push({ type: 'text', text: block.text });
        return;
      case 'image':
        parts.push(image(block.source, `${at}.source`));
        return;
      case 'tool_result':
        out.push(toolMessage(block, at));
        return;
      default:
        throw unsupported(
          `${at}.type`,
          `${at}.type ${JSON.stringify(block.type)} is not supported for this model (text, image and tool_result are)`,
        );
    }
  });
  if (parts.length > 0)
    out.push({
      role: 'user',
      content: parts.every((p) => p.type === 'text')
        ? parts.map((p) => p.text as string).join('\n\n')
        : parts,
    });
  return out;
}

function assistant(content: unknown[], param: string): Json {
  const texts: string[] = [];
  const calls: Json[] = [];
  content.forEach((block: unknown, i) => {
    const at = `${param}.content[${i}]`;
    if (!isObject(block)) throw invalid(at, `${at} must be an object`);
    if (block.type === 'text' && typeof block.text === 'string') texts.push(block.text);
    else if (block.type === 'tool_use') {
      if (typeof block.id !== 'string' || typeof block.name !== 'string')
        throw invalid(at, `${at} must have a string id and name`);
      calls.push({
        id: block.id,
        type: 'function',
        function: { name: block.name, arguments: JSON.stringify(block.input ?? {}) },
      });
    } else if (block.type === 'thinking' || block.type === 'redacted_thinking') {
      // a previous answer's reasoning: an OpenAI-compatible model cannot take it back
    } else
      throw unsupported(
        `${at}.type`,
        `${at}.type ${JSON.stringify(block.type)} is not supported for this model`,
      );
  });
  const out: Json = { role: 'assistant', content: texts.length > 0 ? texts.join('') : null };
  if (calls.length > 0) out.tool_calls = calls;
  return out;
}

function toolMessage(block: Json, param: string): Json {
  if (typeof block.tool_use_id !== 'string' || block.tool_use_id === '')
    throw invalid(`${param}.tool_use_id`, `${param}.tool_use_id must be a non-empty string`);
  const content = block.content;
  let text: string;
  if (content === undefined || content === null) text = '';
  else if (typeof content === 'string') text = content;
  else if (Array.isArray(content))
    text = content
      .map((part: unknown, i) => {
        if (isObject(part) && part.type === 'text' && typeof part.text === 'string') return part.text;
        throw unsupported(
          `${param}.content[${i}]`,
          `${param}.content[${i}] must be a text block for this model (tool results carry text only)`,
        );
      })
      .join('\n\n');
  else throw invalid(`${param}.content`, `${param}.content must be a string or an array of text blocks`);
  return { role: 'tool', tool_call_id: block.tool_use_id, content: text };
}

function image(source: unknown, param: string): Json {
  if (
    isObject(source) &&
    source.type === 'base64' &&
    typeof source.media_type === 'string' &&
    typeof source.data === 'string'
  )
    return { type: 'image_url', image_url: { url: `data:${source.media_type};base64,${source.data}` } };
  if (isObject(source) && source.type === 'url' && typeof source.url === 'string')
    return { type: 'image_url', image_url: { url: source.url } };
  throw unsupported(`${param}.type`, `${param} must be a base64 or url image source for this model`);
}

function toolsOf(tools: unknown): Json[] | null {
  if (tools === undefined || tools === null) return null;
  if (!Array.isArray(tools)) throw invalid('tools', 'tools must be an array');
  if (tools.length === 0) return null;
  return tools.map((tool: unknown, i) => {
    const param = `tools[${i}]`;
    if (!isObject(tool)) throw invalid(param, `${param} must be an object`);
    if (tool.type !== undefined && tool.type !== null && tool.type !== 'custom')
      throw unsupported(
        `${param}.type`,
        `${param}.type ${JSON.stringify(tool.type)} is not supported for this model (only client tools with an input_schema are)`,
      );
    if (typeof tool.name !== 'string' || tool.name === '')
      throw invalid(`${param}.name`, `${param}.name must be a non-empty string`);
    if (!isObject(tool.input_schema))
      throw invalid(`${param}.input_schema`, `${param}.input_schema must be an object`);
    const fn: Json = { name: tool.name };
    if (typeof tool.description === 'string') fn.description = tool.description;
    fn.parameters = tool.input_schema;
    return { type: 'function', function: fn };
  });
}

function isObject(v: unknown): v is Json {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}
