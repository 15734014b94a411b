// The soak, briefly (GANTRY_TEST_SOAK_SECONDS, default 45 s per layout; soak-one.test.ts and
// soak-separate.test.ts): mixed load on every service in one process and in one process per
// service, on PostgreSQL. Over so short a run the
// slopes are reported, not judged (`npm run soak` runs 30 minutes and judges them); what is checked
// is what a short run can show: no error the load does not expect, every announced event delivered
// once and audited in a valid chain, and no descriptors or sockets left behind by the calls and
// streams (the count after the run is within a few of the count after the warm-up).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { freshPostgresDatabase, postgresSkip, requirePostgresInCi } from '@gantry/test-support/databases';
import { formatReport, runSoak, type SoakMode } from './driver.js';

const SECONDS = Number(process.env.GANTRY_TEST_SOAK_SECONDS ?? 45);
/** Descriptors a process may hold above its post-warm-up count at the end: pooled connections opening on demand, a log rotation. */
const DESCRIPTOR_SLACK = 12;

/** The brief soak of one layout, as a describe with one test (each layout is its own file, to stay within the runner's per-file time). */
export function soakCase(mode: SoakMode): void {
  requirePostgresInCi('the soak test');
  describe('soak: mixed load on PostgreSQL', { skip: postgresSkip() }, () => {
    test(`${mode === 'one' ? 'one process' : 'one process per service'}, ${SECONDS} s: no unexpected error, every event delivered and audited once, no descriptors left behind`, { timeout: (SECONDS + 300) * 1000 }, async () => {
      const database = await freshPostgresDatabase(`t_soak_${mode}`);
      try {
        const report = await runSoak({ mode, databaseUrl: database.url, durationMs: SECONDS * 1000, sampleEveryMs: Math.max(1000, (SECONDS * 1000) / 20) });
        console.log(formatReport(report));
        assert.deepEqual(report.errors, {}, 'the load expects no errors');
        for (const what of ['settlement flow', 'approval flow', 'log append, read and tail']) assert.ok((report.operations[what] ?? 0) > 0, `${what} ran`);
        assert.equal(report.deliveries.unique, report.deliveries.expected, 'every announced event was delivered');
        assert.equal(report.deliveries.received, report.deliveries.unique, 'and once');
        assert.equal(report.audit.entries, report.audit.expected, 'every event is audited once');
        assert.ok(report.audit.chainValid, 'the audit chains verify');
        for (const p of report.processes) {
          assert.ok(p.samples.length >= 4, `${p.target}: sampled`);
          assert.ok(p.descriptors.fdsAtEnd <= p.descriptors.fdsAfterWarmup + DESCRIPTOR_SLACK, `${p.target}: descriptors ${p.descriptors.fdsAfterWarmup} after the warm-up, ${p.descriptors.fdsAtEnd} at the end`);
          assert.ok(p.descriptors.socketsAtEnd <= p.descriptors.socketsAfterWarmup + DESCRIPTOR_SLACK, `${p.target}: sockets ${p.descriptors.socketsAfterWarmup} after the warm-up, ${p.descriptors.socketsAtEnd} at the end`);
        }
      } finally {
        await database.drop();
      }
    });
  });
}
