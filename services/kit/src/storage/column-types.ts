// What a column's value is in JavaScript, the same from both engines, so that stores decode nothing
// themselves:
//
//   int8 (bigint, count(*), sums of integers)  bigint       pg: a string, PGlite: a number when it fits
//   bytea                                      Buffer       PGlite: a Uint8Array
//   timestamptz                                Date         both engines already
//   json, jsonb                                the value    both engines already (JSON.parse)
//   int2, int4                                 number       both engines already
//
// numeric (what sum() of a bigint column gives) stays a string on both: a statement that wants a
// bigint casts it (::bigint). Each adapter installs the parsers below over its engine's own.

/** PostgreSQL type OIDs the adapters parse themselves. */
export const TYPE_OIDS = { bytea: 17, int8: 20 } as const;

/** int8 text → bigint: exact, where a number would round past 2^53. */
export const parseInt8 = (text: string): bigint => BigInt(text);

/** bytea in PostgreSQL's hex output format (`\x0a1b…`, the default) → Buffer. */
export const parseByteaHex = (text: string): Buffer => Buffer.from(text.slice(2), 'hex');
