// streaming: a constant arrival rate of streamed chat completions ("stream":
// true), the fake provider pacing CHUNKS content chunks CHUNK_INTERVAL_MS apart.
// Each body must end with `data: [DONE]` and carry no "usage" (the gateway
// asked the provider for usage itself and strips that chunk).
//
//   RATE (streams started per second, default 50), DURATION (default 60s),
//   CHUNKS (default 10), CHUNK_INTERVAL_MS (default 50),
//   PRE_VUS (default 60), MAX_VUS (default 400)
//   thresholds: a stream lasts about (CHUNKS + 2) x CHUNK_INTERVAL_MS, the
//   provider's pacing (the content chunks, the finish chunk, and the usage
//   chunk the gateway asks for; 600 ms by default); p95 and p99 may exceed
//   that by at most P95_EXTRA_MS (default 100) and P99_EXTRA_MS (default
//   250); time to the response headers (http_req_waiting) p95 < TTFB_P95_MS
//   (default 100).
//   Against a real provider, set the thresholds' absolute values with
//   P95_MS / P99_MS instead.
import { chatStream, checkStream, envInt, envNum, durationSeconds } from './lib/common.js';

const RATE = envInt('RATE', 50);
const DURATION = __ENV.DURATION || '60s';
const CHUNKS = envInt('CHUNKS', 10);
const INTERVAL = envInt('CHUNK_INTERVAL_MS', 50);
const PACED = (CHUNKS + 2) * INTERVAL;
const P95 = envNum('P95_MS', PACED + envNum('P95_EXTRA_MS', 100));
const P99 = envNum('P99_MS', PACED + envNum('P99_EXTRA_MS', 250));
const PLANNED = RATE * durationSeconds(DURATION);

export const options = {
  noUsageReport: true, // never phone home (loopback-only machines)
  scenarios: {
    streaming: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      duration: DURATION,
      preAllocatedVUs: envInt('PRE_VUS', 60),
      maxVUs: envInt('MAX_VUS', 400),
      gracefulStop: '10s',
    },
  },
  thresholds: {
    http_req_failed: ['rate<0.001'],
    http_req_duration: [`p(95)<${P95}`, `p(99)<${P99}`],
    http_req_waiting: [`p(95)<${envNum('TTFB_P95_MS', 100)}`],
    checks: ['rate>0.999'],
    dropped_iterations: [`count<=${Math.floor(PLANNED * 0.01)}`],
  },
};

const CONTROLS = { 'x-fake-chunks': String(CHUNKS), 'x-fake-chunk-interval-ms': String(INTERVAL) };

export default function () {
  checkStream(chatStream({}, CONTROLS), CHUNKS, true);
}
