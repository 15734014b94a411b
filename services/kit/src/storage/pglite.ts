import { chmodSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import pg from 'pg';
import { TYPE_OIDS, parseByteaHex, parseInt8 } from './column-types.js';
import { copyTuples, inlineParams } from './copy-out.js';
import { assertChannel, type Database, type QueryResult, type Sql } from './database.js';

/**
 * Makes a PGlite data directory and everything in it owner-only (0700, files 0600), as PostgreSQL
 * requires of its own: the files hold every row. PGlite's file system creates files 0666 less the
 * umask; the directory's mode is what keeps files it creates later from other users.
 */
function restrictToOwner(dataDir: string): void {
  chmodSync(dataDir, 0o700);
  for (const entry of readdirSync(dataDir, { withFileTypes: true, recursive: true })) {
    if (entry.isSymbolicLink()) continue;
    chmodSync(join(entry.parentPath, entry.name), entry.isDirectory() ? 0o700 : 0o600);
  }
}

/** PGlite (PostgreSQL in WASM, in-process) on a data directory; `memory://` for throwaway use. */
export async function openPglite(dataDir: string): Promise<Database> {
  const onDisk = !dataDir.startsWith('memory://');
  if (onDisk) {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    restrictToOwner(dataDir);
  }
  // int8 as bigint and bytea as Buffer, as from PostgreSQL (column-types.ts).
  const db = await PGlite.create(dataDir, { parsers: { [TYPE_OIDS.int8]: parseInt8, [TYPE_OIDS.bytea]: parseByteaHex } });
  // initdb (a fresh directory) has just written the cluster's files.
  if (onDisk) restrictToOwner(dataDir);
  const run = async <R>(sql: Pick<PGlite, 'query'>, text: string, params?: readonly unknown[], rowMode?: 'array'): Promise<QueryResult<R>> => {
    const res = await sql.query<R>(text, params as unknown[] | undefined, rowMode ? { rowMode } : undefined);
    // PGlite reports affectedRows 0 (not undefined) for SELECT: fall back to the rows returned.
    return { rows: res.rows, rowCount: res.affectedRows || res.rows.length };
  };
  const sql: Sql = {
    query: (text, params) => run(db, text, params),
    queryArrays: (text, params) => run(db, text, params, 'array'),
    exec: async (script) => {
      await db.exec(script);
    },
  };
  return {
    engine: 'pglite',
    ...sql,
    // One connection, whose statements run one at a time in the order they were called.
    ordered: sql,
    // PGlite writes a COPY's output to a Blob it returns with the result.
    async copyRows(select, params) {
      const { blob } = await db.query(`COPY (${inlineParams(select, params, pg.escapeLiteral)}) TO '/dev/blob' (FORMAT binary)`);
      if (!blob) throw new Error('PGlite returned no COPY output');
      return copyTuples(Buffer.from(await blob.arrayBuffer()));
    },
    // PGlite has one connection: its transaction() holds it exclusively, so other queries wait.
    transaction: (fn) =>
      db.transaction((tx) =>
        fn({
          query: (text, params) => run(tx, text, params),
          queryArrays: (text, params) => run(tx, text, params, 'array'),
          exec: async (script) => {
            await tx.exec(script);
          },
        } satisfies Sql),
      ),
    async listen(channel, onPayload) {
      assertChannel(channel);
      const unsubscribe = await db.listen(channel, onPayload);
      return unsubscribe;
    },
    async notify(channel, payload) {
      assertChannel(channel);
      await db.query('SELECT pg_notify($1, $2)', [channel, payload]);
    },
    async ping() {
      await db.query('SELECT 1');
    },
    close: async () => {
      await db.close();
      if (onDisk) restrictToOwner(dataDir);
    },
  };
}
