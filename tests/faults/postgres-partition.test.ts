// PostgreSQL partitioned away under load (issue 20): the TCP proxy in front of it holds every byte
// both ways and every new connection (CuttableProxy.hold), as a network partition does: TCP
// retransmits, nothing is refused, nothing answers. Then the partition heals and the held bytes
// flow on. The checks are postgres-outage.test.ts's (outage-support.ts). Nothing tells the server
// the database is gone but silence, so its reachability probe (database.pingTimeoutMs) decides:
// until then calls wait, after it the statements waiting are cut and new ones refused at once, all
// with UNAVAILABLE, none past its deadline.
import { after, describe, test } from 'node:test';
import { freshPostgresDatabase, postgresSkip, requirePostgresInCi } from '@gantry/test-support/databases';
import { CuttableProxy } from '@gantry/test-support/proxy';
import { throughFault } from './outage-support.js';

requirePostgresInCi('the PostgreSQL partition fault test');

const PARTITION_MS = Number(process.env.GANTRY_TEST_FAULTS_PARTITION_MS ?? 20_000);

describe('PostgreSQL partitioned away under load, behind a TCP proxy that holds every byte', { skip: postgresSkip() }, () => {
  const cleanups: (() => Promise<unknown>)[] = [];
  after(async () => {
    for (const fn of cleanups.reverse()) await fn().catch(() => {});
  });

  test(`partitioned for ${PARTITION_MS / 1000} s: NOT_SERVING but alive, every call UNAVAILABLE within its deadline, recovery without a restart, nothing lost`, async (t) => {
    const database = await freshPostgresDatabase('t_partition');
    cleanups.push(() => database.drop());
    const proxy = await CuttableProxy.start(new URL(database.url));
    cleanups.push(() => proxy.close());
    await throughFault(t, proxy.through(database.url), { begin: async () => proxy.hold(), downMs: PARTITION_MS, end: async () => proxy.restore(), failFast: false }, cleanups);
  });
});
