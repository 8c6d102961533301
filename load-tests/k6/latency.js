// latency: used by load-tests/compare.sh. A constant arrival rate of the same
// non-streamed chat completion against any target (the fake provider directly,
// or the gateway), to read p50/p99 at a fixed rate from --summary-export.
// Kept as cheap as k6 allows, since k6 shares the machine with the target:
// response bodies are discarded and nothing but the status is checked (through
// http_req_failed; the fake provider alone sends no gateway headers).
//
//   RATE (default 100), DURATION (default 15s), PRE_VUS (default 50), MAX_VUS (default 500)
import http from 'k6/http';
import { CHAT_URL, chatBody, gatewayHeaders, envInt } from './lib/common.js';

export const options = {
  scenarios: {
    latency: {
      executor: 'constant-arrival-rate',
      rate: envInt('RATE', 100),
      timeUnit: '1s',
      duration: __ENV.DURATION || '15s',
      preAllocatedVUs: envInt('PRE_VUS', 50),
      maxVUs: envInt('MAX_VUS', 500),
    },
  },
  discardResponseBodies: true,
  noUsageReport: true,
  systemTags: ['status', 'method', 'scenario', 'expected_response'],
  summaryTrendStats: ['avg', 'min', 'med', 'max', 'p(90)', 'p(95)', 'p(99)'],
  thresholds: {
    http_req_failed: ['rate<0.01'],
  },
};

const BODY = chatBody(false);
const PARAMS = { headers: gatewayHeaders() };

export default function () {
  http.post(CHAT_URL, BODY, PARAMS);
}
