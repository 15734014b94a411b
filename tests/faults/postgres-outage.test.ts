// PostgreSQL lost under load (issue 20). `gantry serve --target=all` runs on PostgreSQL with a
// settlement and an approvals load and a webhook receiver subscribed to every domain event, then:
//   - cut: the connection goes through a TCP proxy the test cuts (open sockets destroyed, new
//     ones refused) for GANTRY_TEST_FAULTS_OUTAGE_MS (default 30 s), then restores;
//   - restart: postgres-restart.test.ts (a file of its own, so each stays inside 120 s).
// Checked: readiness turns NOT_SERVING (grpc.health.v1 and /readyz) while liveness stays SERVING;
// every call fails with UNAVAILABLE well inside its deadline (time to fail measured); the pools
// recover without a restart and readiness returns; each call cut by the fault is resent unchanged
// and in the end every acknowledged draw and vote is booked once, every domain event audited once
// and delivered (twice only where the service recorded a second attempt; never when the fault is
// shorter than a delivery's lease). outage-support.ts holds the load and the checks.
import { after, describe, test } from 'node:test';
import { freshPostgresDatabase, postgresSkip, requirePostgresInCi } from '@gantry/test-support/databases';
import { CuttableProxy } from '@gantry/test-support/proxy';
import { throughFault } from './outage-support.js';

requirePostgresInCi('the PostgreSQL outage fault tests');

const OUTAGE_MS = Number(process.env.GANTRY_TEST_FAULTS_OUTAGE_MS ?? 30_000);

describe('PostgreSQL unreachable for a while under load, behind a TCP proxy that is cut', { skip: postgresSkip() }, () => {
  const cleanups: (() => Promise<unknown>)[] = [];
  after(async () => {
    for (const fn of cleanups.reverse()) await fn().catch(() => {});
  });

  test(`cut for ${OUTAGE_MS / 1000} s: NOT_SERVING but alive, calls fail fast with UNAVAILABLE, recovery without a restart, nothing lost`, async (t) => {
    const database = await freshPostgresDatabase('t_outage');
    cleanups.push(() => database.drop());
    const proxy = await CuttableProxy.start(new URL(database.url));
    cleanups.push(() => proxy.close());
    await throughFault(t, proxy.through(database.url), { begin: async () => proxy.sever(), downMs: OUTAGE_MS, end: async () => proxy.restore(), failFast: true }, cleanups);
  });
});
