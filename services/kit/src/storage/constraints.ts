// A store's transactions, and what the database's own refusals mean to the contract. A store checks
// first and explains better; its constraints are the last line, for races the checks cannot see,
// and each store names in one table the error a violation of each constraint becomes.
import type { EventWriter, Outbox } from '../events/outbox.js';
import type { Database, Sql } from './database.js';

/** The kinds of violation a store maps, by their SQLSTATE. */
const SQLSTATES = { unique: '23505', check: '23514' } as const;

/** What the violation of one named constraint means to the contract. */
export interface ConstraintRule {
  /** A UNIQUE constraint or index, or a CHECK constraint. */
  violation: keyof typeof SQLSTATES;
  /** The error the caller gets instead of the database's. */
  error: () => Error;
}

/** A store's table: constraint name → what its violation becomes. */
export type ConstraintErrors = Readonly<Record<string, ConstraintRule>>;

/** `err` as the error its constraint maps to in `errors`; any other error unchanged. */
export function mapConstraintError(err: unknown, errors: ConstraintErrors): unknown {
  const { code, constraint } = (err ?? {}) as { code?: unknown; constraint?: unknown };
  if (typeof constraint !== 'string' || !Object.hasOwn(errors, constraint)) return err;
  const rule = errors[constraint]!;
  return code === SQLSTATES[rule.violation] ? rule.error() : err;
}

/** How a store runs its transactions. */
export interface StoreTransactions<X extends EventWriter> {
  db: Database;
  /** Where the transaction's domain events go (see Outbox.transaction). */
  outbox: Outbox;
  /** The store's transaction object on one transaction's statements. */
  begin: (sql: Sql) => X;
  errors: ConstraintErrors;
}

/**
 * Runs `fn` in one transaction on the store's transaction object: its events are handed to the
 * relay once it has committed, and a violation of a constraint in the store's table becomes its
 * error (after the rollback).
 */
export async function storeTransaction<X extends EventWriter, T>(store: StoreTransactions<X>, fn: (tx: X) => Promise<T>): Promise<T> {
  try {
    return await store.outbox.transaction(store.db, store.begin, fn);
  } catch (err) {
    throw mapConstraintError(err, store.errors);
  }
}
