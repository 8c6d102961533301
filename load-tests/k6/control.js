// control: floopy-control's API under load. Readers list projects and keys
// and read the org; writers create a key and revoke it (each write is a
// transaction with its audit entry, and wakes every gateway). Tagged
// kind:read and kind:write, so the summary gives each one's p99.
//
//   CONTROL_URL, TOKEN (fpu_...), ORG: set by load-tests/control.sh
//   READERS (default 8), WRITERS (default 2), DURATION (default 20s)
//   thresholds: READ_P99_MS (default 100), WRITE_P99_MS (default 200)
import http from 'k6/http';
import { check } from 'k6';

const BASE = __ENV.CONTROL_URL;
const ORG = __ENV.ORG;
const params = (kind) => ({
  headers: { Authorization: `Bearer ${__ENV.TOKEN}`, 'Content-Type': 'application/json' },
  tags: { kind },
});
const int = (name, fallback) => parseInt(__ENV[name] || `${fallback}`, 10);

export const options = {
  noUsageReport: true,
  summaryTrendStats: ['avg', 'p(50)', 'p(95)', 'p(99)', 'max'],
  scenarios: {
    readers: { executor: 'constant-vus', exec: 'read', vus: int('READERS', 8), duration: __ENV.DURATION || '20s' },
    writers: { executor: 'constant-vus', exec: 'write', vus: int('WRITERS', 2), duration: __ENV.DURATION || '20s' },
  },
  thresholds: {
    http_req_failed: ['rate<0.001'],
    'http_req_duration{kind:read}': [`p(99)<${int('READ_P99_MS', 100)}`],
    'http_req_duration{kind:write}': [`p(99)<${int('WRITE_P99_MS', 200)}`],
    checks: ['rate==1'],
  },
};

export function read() {
  const responses = http.batch([
    ['GET', `${BASE}/v1/orgs/${ORG}/projects`, null, params('read')],
    ['GET', `${BASE}/v1/orgs/${ORG}/keys?limit=50`, null, params('read')],
    ['GET', `${BASE}/v1/orgs/${ORG}`, null, params('read')],
  ]);
  responses.forEach((r) => check(r, { 'read 200': (x) => x.status === 200 }));
}

export function write() {
  const created = http.post(`${BASE}/v1/orgs/${ORG}/keys`,
    JSON.stringify({ name: 'load', environment: 'development' }), params('write'));
  if (!check(created, { 'key created': (r) => r.status === 201 })) {
    return;
  }
  const id = created.json('id');
  const revoked = http.post(`${BASE}/v1/orgs/${ORG}/keys/${id}/revoke`, null, params('write'));
  check(revoked, { 'key revoked': (r) => r.status === 200 });
}
