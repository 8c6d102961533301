// spike: a sudden surge of non-streamed chat completions, from BASE_RATE to
// PEAK_RATE and back (ramping-arrival-rate), to see the gateway absorb it and
// recover: no errors, bounded latency.
//
//   BASE_RATE (default 50/s), PEAK_RATE (default 1000/s),
//   DURATION (time held at the peak, default 20s), RAMP (default 5s),
//   HOLD (time at BASE_RATE before and after, default 10s),
//   PRE_VUS (default 100), MAX_VUS (default 1000)
//   thresholds: P95_MS (default 250), P99_MS (default 1000), error rate < 1%,
//   at most DROP_PCT (default 5) % of the planned iterations dropped
//   (k6 and the gateway share 2 cores on the reference machine)
import { chat, checkChat, envInt, envNum, durationSeconds } from './lib/common.js';

const BASE = envInt('BASE_RATE', 50);
const PEAK = envInt('PEAK_RATE', 1000);
const PEAK_FOR = __ENV.DURATION || '20s';
const RAMP = __ENV.RAMP || '5s';
const HOLD = __ENV.HOLD || '10s';
const PLANNED =
  BASE * durationSeconds(HOLD) * 2 + PEAK * durationSeconds(PEAK_FOR) + (BASE + PEAK) * durationSeconds(RAMP);

export const options = {
  noUsageReport: true, // never phone home (loopback-only machines)
  scenarios: {
    spike: {
      executor: 'ramping-arrival-rate',
      startRate: BASE,
      timeUnit: '1s',
      preAllocatedVUs: envInt('PRE_VUS', 100),
      maxVUs: envInt('MAX_VUS', 1000),
      stages: [
        { target: BASE, duration: HOLD },
        { target: PEAK, duration: RAMP },
        { target: PEAK, duration: PEAK_FOR },
        { target: BASE, duration: RAMP },
        { target: BASE, duration: HOLD },
      ],
    },
  },
  thresholds: {
    http_req_failed: ['rate<0.01'],
    http_req_duration: [`p(95)<${envNum('P95_MS', 250)}`, `p(99)<${envNum('P99_MS', 1000)}`],
    checks: ['rate>0.99'],
    dropped_iterations: [`count<=${Math.floor((PLANNED * envNum('DROP_PCT', 5)) / 100)}`],
  },
};

export default function () {
  checkChat(chat(), true);
}
