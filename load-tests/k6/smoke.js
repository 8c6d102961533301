// smoke: a few VUs for ~10 s. Every chat completion must be a 200 with the
// gateway's headers (floopy-request-id, floopy-project-id) and a JSON body with
// usage; one streamed completion must end with `data: [DONE]`; when set, the key
// without environment and the Anthropic path are tried once each.
//
//   VUS (default 4), DURATION (default 10s)
//   thresholds: P95_MS (default 200), P99_MS (default 500)
import http from 'k6/http';
import { check, sleep } from 'k6';
import {
  BASE_URL, KEY, PROJECT, FAKE, envInt, envNum, gatewayHeaders, chat, checkChat, chatStream,
  checkStream, header,
} from './lib/common.js';

const VUS = envInt('VUS', 4);
const DURATION = __ENV.DURATION || '10s';

export const options = {
  noUsageReport: true, // never phone home (loopback-only machines)
  scenarios: {
    chat: { executor: 'constant-vus', exec: 'chatLoop', vus: VUS, duration: DURATION },
    stream: { executor: 'per-vu-iterations', exec: 'streamOnce', vus: 1, iterations: 1 },
    extras: { executor: 'per-vu-iterations', exec: 'extrasOnce', vus: 1, iterations: 1, startTime: '1s' },
  },
  thresholds: {
    http_req_failed: ['rate<0.01'],
    http_req_duration: [`p(95)<${envNum('P95_MS', 200)}`, `p(99)<${envNum('P99_MS', 500)}`],
    'http_req_duration{kind:stream}': ['max<5000'],
    checks: ['rate>0.99'],
    'checks{scenario:stream}': ['rate==1'],
    'checks{scenario:extras}': ['rate==1'],
    // The scenarios that must have run at all.
    'http_reqs{scenario:chat}': ['count>=10'],
    'http_reqs{scenario:stream}': ['count==1'],
  },
};

export function chatLoop() {
  checkChat(chat(), true);
  sleep(0.05);
}

export function streamOnce() {
  checkStream(chatStream({}, { 'x-fake-chunks': '5' }), 5, true);
}

export function extrasOnce() {
  // Unknown key: an OpenAI-shaped 401 (expected, not counted as a failure).
  const bad = http.post(`${BASE_URL}/v1/chat/completions`, '{"model":"gpt-4o","messages":[]}', {
    headers: Object.assign(gatewayHeaders(), { Authorization: 'Bearer fpk_thiskeydoesnotexist0000000000000000' }),
    responseCallback: http.expectedStatuses(401),
    tags: { kind: 'unauthorized' },
  });
  check(bad, {
    'unknown key: 401 invalid_api_key': (r) => r.status === 401 && (r.json('error.code') || '') === 'invalid_api_key',
  });

  const models = http.get(`${BASE_URL}/v1/models`, { headers: gatewayHeaders(), tags: { kind: 'models' } });
  check(models, { 'GET /v1/models: 200 with a list': (r) => r.status === 200 && Array.isArray(r.json('data')) });

  if (__ENV.FLOOPY_KEY_NOENV) {
    checkChat(chat({ key: 'noenv' }, {}, __ENV.FLOOPY_KEY_NOENV), true);
  }

  const anthropicModel = __ENV.FLOOPY_ANTHROPIC_MODEL;
  if (anthropicModel) {
    const res = http.post(
      `${BASE_URL}/v1/messages`,
      JSON.stringify({
        model: anthropicModel,
        max_tokens: 16,
        messages: [{ role: 'user', content: 'Say hello in five words.' }],
      }),
      { headers: Object.assign(gatewayHeaders(), { 'anthropic-version': '2023-06-01' }), tags: { kind: 'messages' } },
    );
    check(res, {
      'messages: status 200': (r) => r.status === 200,
      'messages: usage in body': (r) => (r.json('usage.input_tokens') || 0) > 0,
      'messages: floopy-request-id': (r) => !!header(r, 'floopy-request-id'),
    });
  }
}

export function setup() {
  console.log(`smoke: ${VUS} VUs for ${DURATION} against ${BASE_URL} (project ${PROJECT || 'from the key'}, fake provider: ${FAKE}, key ${KEY.slice(0, 8)}...)`);
}
