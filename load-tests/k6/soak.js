// soak: a moderate constant arrival rate for a long time (default 10 minutes),
// 90% non-streamed and 10% streamed chat completions, to catch what only time
// shows: latency creeping up, errors appearing, memory growing (load-tests/run.sh
// prints the gateway's resident memory before and after).
//
//   RATE (requests/s, default 100), DURATION (default 10m),
//   STREAM_PCT (default 10), PRE_VUS (default 30), MAX_VUS (default 300)
//   thresholds: P95_MS (default 50), P99_MS (default 150) on the non-streamed
//   requests; no more than 0.1% errors or failed checks; at most 1% dropped
import { chat, checkChat, chatStream, checkStream, envInt, envNum, durationSeconds } from './lib/common.js';

const RATE = envInt('RATE', 100);
const DURATION = __ENV.DURATION || '10m';
const STREAM_PCT = envNum('STREAM_PCT', 10);
const PLANNED = RATE * durationSeconds(DURATION);

export const options = {
  noUsageReport: true, // never phone home (loopback-only machines)
  scenarios: {
    soak: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      duration: DURATION,
      preAllocatedVUs: envInt('PRE_VUS', 30),
      maxVUs: envInt('MAX_VUS', 300),
    },
  },
  thresholds: {
    http_req_failed: ['rate<0.001'],
    'http_req_duration{kind:chat}': [`p(95)<${envNum('P95_MS', 50)}`, `p(99)<${envNum('P99_MS', 150)}`],
    'http_req_duration{kind:stream}': [`p(99)<${envNum('STREAM_P99_MS', 300)}`],
    checks: ['rate>0.999'],
    dropped_iterations: [`count<=${Math.floor(PLANNED * 0.01)}`],
  },
};

const STREAM_CONTROLS = { 'x-fake-chunks': '5', 'x-fake-chunk-interval-ms': '10' };

export default function () {
  if (Math.random() * 100 < STREAM_PCT) {
    checkStream(chatStream({}, STREAM_CONTROLS), 5, true);
  } else {
    checkChat(chat(), true);
  }
}
