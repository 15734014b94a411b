// Reading rows as bytes, through COPY (...) TO STDOUT (FORMAT binary).
//
// pg receives every column as text: a bytea arrives as hex (2x its size) and Node decodes it
// again, into an object per row. COPY's binary format carries each value in its binary form, and
// a reader with a fixed layout walks the rows in place. COPY takes no bind parameters, so the
// statement's parameters are written into it as literals.

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
 * The tuples of a binary COPY output: what lies between its header and its trailer, a view into
 * `copy`. Throws on another format or a stream without its trailer. The tuples are not walked
 * here: their reader knows their layout, and checks that they end where the region does.
 */
export function copyTuples(copy: Buffer): Buffer {
  if (copy.length < EXTENSION_LENGTH_AT + 4 || !copy.subarray(0, SIGNATURE.length).equals(SIGNATURE)) throw new Error('COPY output is not in the binary format');
  const start = EXTENSION_LENGTH_AT + 4 + copy.readUInt32BE(EXTENSION_LENGTH_AT);
  const end = copy.length - 2;
  if (end < start || copy.readInt16BE(end) !== TRAILER) throw new Error(`COPY output ends early (${copy.length} bytes, no trailer)`);
  return copy.subarray(start, end);
}
