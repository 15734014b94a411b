// Reading one large bytea value as bytes, through COPY ... TO STDOUT (FORMAT binary).
//
// pg receives every column as text: a bytea arrives as hex (2x its size) or, encoded by the
// statement, base64 (4/3), and Node decodes it again. COPY's binary format carries the value as it
// is. COPY takes no bind parameters, so the statement's parameters are written into it as literals.

/** Values a statement run through COPY may take as parameters. */
export type CopyParam = string | number | bigint | null;

/**
 * `text` with each `$n` replaced by parameter n as a SQL literal. `$n` must only ever be a
 * parameter reference in `text` (no `$` inside its string literals or dollar quotes): the statements
 * given are the services' own constants, never built from input. Strings are quoted by `quote`
 * (the pg client's escapeLiteral); numbers must be safe integers.
 */
export function inlineParams(text: string, params: readonly CopyParam[], quote: (s: string) => string): string {
  const used = new Set<number>();
  const inlined = text.replace(/\$(\d+)/g, (_, digits: string) => {
    const n = Number(digits);
    if (n < 1 || n > params.length) throw new Error(`statement refers to $${n} but has ${params.length} parameter(s)`);
    used.add(n);
    return literal(params[n - 1]!, n, quote);
  });
  if (used.size !== params.length) throw new Error(`statement uses ${used.size} of its ${params.length} parameters`);
  return inlined;
}

function literal(value: CopyParam, n: number, quote: (s: string) => string): string {
  if (value === null) return 'NULL';
  if (typeof value === 'string') return quote(value);
  if (typeof value === 'bigint') return value.toString();
  if (Number.isSafeInteger(value)) return String(value);
  throw new Error(`parameter $${n} (${value}) is not a safe integer`);
}

// The binary COPY format (PostgreSQL docs, "COPY", "Binary Format"): an 11-byte signature, a
// 32-bit flags field, a 32-bit header extension length and that many bytes; then per tuple a
// 16-bit field count and per field a 32-bit length (-1 for NULL) and its bytes; then a 16-bit -1.
const SIGNATURE = Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1');
const FLAGS_AT = SIGNATURE.length;
const EXTENSION_LENGTH_AT = FLAGS_AT + 4;
const TRAILER = -1;

/**
 * The single value of a one-column binary COPY output (undefined when it has no row or the value
 * is NULL). Throws on anything else: another format, more columns or rows, or a truncated stream.
 * The result is a view into `copy`.
 */
export function singleCopyValue(copy: Buffer): Buffer | undefined {
  if (copy.length < EXTENSION_LENGTH_AT + 4 || !copy.subarray(0, SIGNATURE.length).equals(SIGNATURE)) throw new Error('COPY output is not in the binary format');
  let at = EXTENSION_LENGTH_AT + 4 + copy.readUInt32BE(EXTENSION_LENGTH_AT);
  const need = (bytes: number) => {
    if (at + bytes > copy.length) throw new Error(`COPY output ends early (${copy.length} bytes)`);
  };
  need(2);
  const fields = copy.readInt16BE(at);
  at += 2;
  if (fields === TRAILER) return undefined;
  if (fields !== 1) throw new Error(`COPY output has ${fields} columns, expected 1`);
  need(4);
  const length = copy.readInt32BE(at);
  at += 4;
  const value = length < 0 ? undefined : copy.subarray(at, at + length);
  at += Math.max(0, length);
  need(2);
  if (copy.readInt16BE(at) !== TRAILER || at + 2 !== copy.length) throw new Error('COPY output has more than one row');
  return value;
}
