// Retention of the delivery history (delivery/pruner.ts runs it): final deliveries (succeeded,
// dead-lettered, cancelled) with their attempts, once they completed before a horizon, and events
// published before a horizon once none of their deliveries is left. Each call deletes one bounded
// batch in one short transaction; rows are taken FOR UPDATE SKIP LOCKED, so replicas pruning at once
// split the work and never wait on each other or on a replay (RetryFailedDeliveries) in progress.
import type { Database } from '@gantry/kit';

export class Retention {
  constructor(private readonly db: Database) {}

  /** Deletes at most `limit` final deliveries completed before `before`, with their attempts; returns how many deliveries. */
  async pruneDeliveries(before: Date, limit: number): Promise<{ deliveries: number; attempts: number }> {
    return this.db.transaction(async (sql) => {
      const { rows } = await sql.query(
        `SELECT delivery_id FROM webhooks.deliveries WHERE status <> 'PENDING' AND completed_at < $1
          ORDER BY completed_at LIMIT $2 FOR UPDATE SKIP LOCKED`,
        [before, limit],
      );
      if (rows.length === 0) return { deliveries: 0, attempts: 0 };
      const ids = rows.map((r) => r.delivery_id as string);
      const attempts = await sql.query(`DELETE FROM webhooks.attempts WHERE delivery_id = ANY($1::text[])`, [ids]);
      const deliveries = await sql.query(`DELETE FROM webhooks.deliveries WHERE delivery_id = ANY($1::text[])`, [ids]);
      return { deliveries: deliveries.rowCount, attempts: attempts.rowCount };
    });
  }

  /** Deletes at most `limit` events published before `before` that no delivery refers to any more; returns how many. */
  async pruneEvents(before: Date, limit: number): Promise<number> {
    const { rowCount } = await this.db.query(
      `DELETE FROM webhooks.events WHERE event_id IN (
         SELECT ev.event_id FROM webhooks.events ev
          WHERE ev.created_at < $1 AND NOT EXISTS (SELECT 1 FROM webhooks.deliveries d WHERE d.event_id = ev.event_id)
          ORDER BY ev.created_at LIMIT $2 FOR UPDATE SKIP LOCKED)`,
      [before, limit],
    );
    return rowCount;
  }
}
