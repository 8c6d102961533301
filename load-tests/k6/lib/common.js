// Shared by the k6 scenarios: target, credentials, the request shape and the checks.
//
// Environment (k6 reads it with __ENV; load-tests/run.sh sets the first ones):
//   FLOOPY_URL              gateway base URL, e.g. http://127.0.0.1:8080 (required)
//   FLOOPY_KEY              gateway API key, sent as Authorization: Bearer (required)
//   FLOOPY_PROJECT          project id sent as floopy-project-id (optional); when set,
//                           the response's floopy-project-id must equal it
//   FLOOPY_MODEL            model of the chat completions (default gpt-4o)
//   FLOOPY_KEY_NOENV        a second key (no environment), exercised by smoke.js if set
//   FLOOPY_ANTHROPIC_MODEL  a model served through POST /v1/messages, exercised by
//                           smoke.js if set
//   FLOOPY_FAKE_PROVIDER    "1" when the gateway's provider is the fake provider:
//                           the checks then also expect its exact answers
//   MAX_TOKENS              max_tokens of each request (default 16)
import http from 'k6/http';
import { check } from 'k6';

export const BASE_URL = (__ENV.FLOOPY_URL || '').replace(/\/+$/, '');
export const KEY = __ENV.FLOOPY_KEY || '';
export const PROJECT = __ENV.FLOOPY_PROJECT || '';
export const MODEL = __ENV.FLOOPY_MODEL || 'gpt-4o';
export const FAKE = __ENV.FLOOPY_FAKE_PROVIDER === '1';
export const MAX_TOKENS = parseInt(__ENV.MAX_TOKENS || '16', 10);

if (!BASE_URL || !KEY) {
  throw new Error('FLOOPY_URL and FLOOPY_KEY must be set (load-tests/run.sh sets them)');
}

export const CHAT_URL = `${BASE_URL}/v1/chat/completions`;

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

// An integer environment variable, or the default.
export function envInt(name, dflt) {
  const v = __ENV[name];
  if (v === undefined || v === '') return dflt;
  const n = parseInt(v, 10);
  if (Number.isNaN(n)) throw new Error(`${name}=${v} is not a number`);
  return n;
}

// A number environment variable (threshold values), or the default.
export function envNum(name, dflt) {
  const v = __ENV[name];
  if (v === undefined || v === '') return dflt;
  const n = Number(v);
  if (Number.isNaN(n)) throw new Error(`${name}=${v} is not a number`);
  return n;
}

// "90s", "10m", "1h30m", "500ms" -> seconds (for sizing thresholds on counts).
export function durationSeconds(d) {
  let total = 0;
  const re = /(\d+(?:\.\d+)?)(ms|h|m|s)/g;
  let m;
  let matched = '';
  while ((m = re.exec(d)) !== null) {
    const n = parseFloat(m[1]);
    total += m[2] === 'h' ? n * 3600 : m[2] === 'm' ? n * 60 : m[2] === 's' ? n : n / 1000;
    matched += m[0];
  }
  if (matched !== d) throw new Error(`bad duration '${d}' (expected e.g. 30s, 10m, 1h)`);
  return total;
}

// The request headers of the gateway: the key, and the project when one is set.
// `extra` adds more (the fake provider's x-fake-* controls, ...).
export function gatewayHeaders(extra) {
  const h = {
    Authorization: `Bearer ${KEY}`,
    'Content-Type': 'application/json',
  };
  if (PROJECT) h['floopy-project-id'] = PROJECT;
  return Object.assign(h, extra || {});
}

// An OpenAI chat completions body of about 500 bytes, as an application sends it.
export function chatBody(stream, model) {
  const body = {
    model: model || MODEL,
    messages: [
      {
        role: 'system',
        content:
          'You are a concise assistant for an online shop. Answer in one short paragraph, ' +
          'quote prices in euros, and never invent product names that are not in the catalogue. ' +
          'Be polite and brief.',
      },
      {
        role: 'user',
        content:
          'I ordered a pair of running shoes last week and the tracking page still says ' +
          '"label created". Can you tell me what that means and when I should expect delivery?',
      },
    ],
    max_tokens: MAX_TOKENS,
    temperature: 0.2,
    user: 'load-test',
  };
  if (stream) body.stream = true;
  return JSON.stringify(body);
}

// A response header, whatever its case (k6 canonicalizes names: Floopy-Request-Id).
export function header(res, name) {
  const want = name.toLowerCase();
  for (const k in res.headers) {
    if (k.toLowerCase() === want) return res.headers[k];
  }
  return undefined;
}

function parseJson(res) {
  try {
    return JSON.parse(res.body);
  } catch (e) {
    return null;
  }
}

// Checks of the gateway's own response headers.
export function gatewayHeaderChecks() {
  return {
    'floopy-request-id is a UUID': (r) => UUID_RE.test(header(r, 'floopy-request-id') || ''),
    'floopy-project-id is the project': (r) => {
      const p = header(r, 'floopy-project-id') || '';
      return PROJECT ? p.toLowerCase() === PROJECT.toLowerCase() : UUID_RE.test(p);
    },
  };
}

// POST /v1/chat/completions (not streamed).
export function chat(tags, extraHeaders, key) {
  const headers = gatewayHeaders(extraHeaders);
  if (key) headers.Authorization = `Bearer ${key}`;
  return http.post(CHAT_URL, chatBody(false), { headers, tags: Object.assign({ kind: 'chat' }, tags || {}) });
}

// Checks of a non-streamed chat completion: 200, the gateway headers, a JSON body with usage.
export function checkChat(res, full) {
  const checks = {
    'chat: status 200': (r) => r.status === 200,
    'chat: JSON body with usage': (r) => {
      const j = parseJson(r);
      return !!(j && j.usage && j.usage.total_tokens > 0 && j.choices && j.choices.length > 0);
    },
  };
  if (FAKE) {
    checks['chat: fake provider usage 10+20'] = (r) => {
      const j = parseJson(r);
      return !!(j && j.usage && j.usage.prompt_tokens === 10 && j.usage.completion_tokens === 20);
    };
  }
  if (full) Object.assign(checks, gatewayHeaderChecks());
  return check(res, checks);
}

// POST /v1/chat/completions with "stream": true; the whole event stream is read.
export function chatStream(tags, extraHeaders) {
  return http.post(CHAT_URL, chatBody(true), {
    headers: gatewayHeaders(extraHeaders),
    tags: Object.assign({ kind: 'stream' }, tags || {}),
  });
}

// Checks of a streamed chat completion: 200, an event stream that ends with
// `data: [DONE]`, and no usage chunk (the gateway asked the provider for usage
// itself and removes that chunk, since the client did not ask for it).
// `chunks`: the number of content chunks expected from the fake provider.
export function checkStream(res, chunks, full) {
  const checks = {
    'stream: status 200': (r) => r.status === 200,
    'stream: text/event-stream': (r) => (header(r, 'content-type') || '').startsWith('text/event-stream'),
    'stream: ends with data: [DONE]': (r) => typeof r.body === 'string' && r.body.trimEnd().endsWith('data: [DONE]'),
    'stream: no usage chunk': (r) => typeof r.body === 'string' && r.body.indexOf('"usage"') === -1,
  };
  if (FAKE && chunks) {
    checks[`stream: ${chunks} content chunks`] = (r) =>
      typeof r.body === 'string' && (r.body.match(/"delta":\{"content":/g) || []).length === chunks;
  }
  if (full) Object.assign(checks, gatewayHeaderChecks());
  return check(res, checks);
}
