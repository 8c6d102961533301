// load: a constant arrival rate of non-streamed chat completions (an open
// model: new requests keep arriving at RATE whatever the latency), every
// response checked (status, gateway headers, usage).
//
//   RATE (requests/s, default 200), DURATION (default 60s),
//   PRE_VUS (default 50), MAX_VUS (default 400)
//   thresholds: P95_MS (default 50), P99_MS (default 150); at most 1% of the
//   planned iterations dropped (k6 ran out of VUs: the target fell behind)
import { chat, checkChat, envInt, envNum, durationSeconds } from './lib/common.js';

const RATE = envInt('RATE', 200);
const DURATION = __ENV.DURATION || '60s';
const PLANNED = RATE * durationSeconds(DURATION);

export const options = {
  noUsageReport: true, // never phone home (loopback-only machines)
  scenarios: {
    load: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      duration: DURATION,
      preAllocatedVUs: envInt('PRE_VUS', 50),
      maxVUs: envInt('MAX_VUS', 400),
    },
  },
  thresholds: {
    http_req_failed: ['rate<0.001'],
    http_req_duration: [`p(95)<${envNum('P95_MS', 50)}`, `p(99)<${envNum('P99_MS', 150)}`],
    checks: ['rate>0.999'],
    dropped_iterations: [`count<=${Math.floor(PLANNED * 0.01)}`],
    http_reqs: [`count>=${Math.floor(PLANNED * 0.95)}`],
  },
};

export default function () {
  checkChat(chat(), true);
}
