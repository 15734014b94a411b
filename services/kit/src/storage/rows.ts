/**
 * The one row a statement must return (an INSERT ... RETURNING, an aggregate, a row the
 * transaction has just locked). A missing row is a broken invariant, not a case to handle: it
 * throws with `what` in the message instead of failing later on `undefined`.
 */
export function one<R>(rows: readonly R[], what: string): R {
  if (rows.length !== 1) throw new Error(`invariant: expected exactly one row of ${what}, got ${rows.length}`);
  return rows[0]!;
}

/** The row a statement returns when it matched, undefined when it matched none; more than one is a broken invariant. */
export function oneOrNone<R>(rows: readonly R[], what: string): R | undefined {
  if (rows.length > 1) throw new Error(`invariant: expected at most one row of ${what}, got ${rows.length}`);
  return rows[0];
}

/**
 * The first row of a statement that returns at least one: a one-row head LEFT JOINed to a page of
 * rows, where every row (and a lone row of NULLs when the page is empty) carries the head's values.
 */
export function first<R>(rows: readonly R[], what: string): R {
  if (rows.length === 0) throw new Error(`invariant: expected at least one row of ${what}, got 0`);
  return rows[0]!;
}
