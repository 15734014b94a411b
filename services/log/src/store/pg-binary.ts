// Array parameters in PostgreSQL's binary format (array_recv), for the append statement's columns.
//
// pg sends a JavaScript array as a text literal: every bytea element becomes `\\x` + hex with
// escaping, built in Node and parsed back by array_in/byteain in PostgreSQL, which for a batch of
// 2,000 entries is most of a megabyte of text each way. A Buffer parameter is sent in binary
// instead (pg-protocol marks it format 1), and PostgreSQL reads a binary `bytea[]` as length-prefixed
// bytes: no hex, no escaping, no copies beyond this one. PGlite serialises parameters itself from
// their types, so only the PostgreSQL engine gets these; PGlite keeps plain arrays.
//
// Layout (src/backend/utils/adt/arrayfuncs.c, array_recv), all integers big-endian:
//   int32 ndim, int32 has-nulls flag, uint32 element type OID,
//   per dimension: int32 length, int32 lower bound (1),
//   per element: int32 byte length, then the element in its type's binary format.

/** Element type OIDs (pg_type.oid) of the arrays the log sends. */
export const ELEMENT_OID = { bytea: 17, int8: 20, text: 25 } as const;

const HEADER_BYTES = 20;

function arrayBuffer(oid: number, count: number, elementBytes: number): { buf: Buffer; at: number } {
  if (count === 0) {
    // An empty array has no dimensions.
    const buf = Buffer.alloc(12);
    buf.writeUInt32BE(oid, 8);
    return { buf, at: 12 };
  }
  const buf = Buffer.allocUnsafe(HEADER_BYTES + elementBytes);
  buf.writeInt32BE(1, 0);
  buf.writeInt32BE(0, 4);
  buf.writeUInt32BE(oid, 8);
  buf.writeInt32BE(count, 12);
  buf.writeInt32BE(1, 16);
  return { buf, at: HEADER_BYTES };
}

/** A `bytea[]` without NULLs. */
export function byteaArray(values: readonly Uint8Array[]): Buffer {
  let bytes = 0;
  for (const v of values) bytes += 4 + v.length;
  const { buf, at: start } = arrayBuffer(ELEMENT_OID.bytea, values.length, bytes);
  let at = start;
  for (const v of values) {
    at = buf.writeInt32BE(v.length, at);
    buf.set(v, at);
    at += v.length;
  }
  return buf;
}

/** A `text[]` without NULLs (UTF-8, the server encoding of every Gantry database). */
export function textArray(values: readonly string[]): Buffer {
  const encoded = values.map((v) => Buffer.from(v, 'utf8'));
  // text's binary format is its bytes, the same layout as bytea's: only the element type differs.
  return withOid(byteaArray(encoded), ELEMENT_OID.text);
}

/** An `int8[]` of integers in the int8 range. */
export function int8Array(values: readonly (bigint | number)[]): Buffer {
  const { buf, at: start } = arrayBuffer(ELEMENT_OID.int8, values.length, values.length * 12);
  let at = start;
  for (const v of values) {
    at = buf.writeInt32BE(8, at);
    at = buf.writeBigInt64BE(BigInt(v), at);
  }
  return buf;
}

function withOid(buf: Buffer, oid: number): Buffer {
  buf.writeUInt32BE(oid, 8);
  return buf;
}
