// Who may append where, what the log records as an entry's author, and whose idempotency keys an
// append uses. Pure: no I/O; the API turns a refusal into PERMISSION_DENIED.
//
// The audit trail is evidence only while nobody but the emitting service can write it: a token
// holder with log.append could otherwise append forged events to `audit.settlement`, or take a
// real event's id as an idempotency key first so that the relay's append of that event fails.
// So every partition whose name starts with `audit.` (in any letter case, so no look-alike such
// as `Audit.settlement` can pass for it) is reserved: `audit.<family>` is appendable only by a
// platform workload that owns the event family `<family>`, authenticated by its certificate
// (principal.workload is never set from a token's claims). Other partitions stay open to every
// caller with log.append.

/** The prefix of every audit partition: `audit.<event family>`. */
export const AUDIT_PARTITION_PREFIX = 'audit.';

/** Event family names as the kit grants them to workloads (services/kit/src/config.ts). */
const FAMILY_PATTERN = /^[a-z][a-z0-9-]{0,62}$/;

/** Longest author the log records, in UTF-8 bytes (a SPIFFE ID or a token subject). */
export const MAX_AUTHOR_BYTES = 1024;

/**
 * The owner recorded with keys that belong to the whole partition rather than to one author:
 * keys of audit partitions (their owning family is their only writer, whichever of its
 * workloads sends) and keys from before authors were recorded.
 */
export const PARTITION_WIDE_KEY_OWNER = '';

/** The authenticated caller as far as the log cares (structurally the kit's Principal). */
export interface Caller {
  /** A token's `sub`, or a workload's SPIFFE ID. */
  subject: string;
  /** Set only for a platform workload authenticated by its certificate. */
  workload?: { name: string; families: ReadonlySet<string> } | undefined;
}

/** True when `partition` is in the reserved audit namespace (any letter case). */
export function isAuditNamespace(partition: string): boolean {
  return partition.slice(0, AUDIT_PARTITION_PREFIX.length).toLowerCase() === AUDIT_PARTITION_PREFIX;
}

/** The event family whose audit trail `partition` is, or undefined when it is none. */
export function auditFamilyOf(partition: string): string | undefined {
  if (!partition.startsWith(AUDIT_PARTITION_PREFIX)) return undefined;
  const family = partition.slice(AUDIT_PARTITION_PREFIX.length);
  return FAMILY_PATTERN.test(family) ? family : undefined;
}

/** Why `caller` may not append to `partition`, in words that say what to do; undefined when it may. */
export function appendRefusal(partition: string, caller: Caller): string | undefined {
  if (!isAuditNamespace(partition)) return undefined;
  const family = auditFamilyOf(partition);
  if (family === undefined) {
    return `partition ${partition} is in the reserved audit namespace but is no event family's audit trail (those are audit.<family>, lower case, written only by the family's service); append to a partition outside "audit."`;
  }
  if (!caller.workload) {
    return `partition ${partition} is the audit trail of the ${family} events: only the ${family} service appends to it, by its workload certificate (spiffe://<trust domain>/<workload> owning family ${family}, calling without a token); ${caller.subject} calls with a token, so append to a partition outside "audit."`;
  }
  if (!caller.workload.families.has(family)) {
    const owned = [...caller.workload.families].sort().join(', ') || 'no event family';
    return `partition ${partition} is the audit trail of the ${family} events, and workload ${caller.workload.name} owns ${owned}; only a workload granted family ${family} (auth.workloads) may append to it`;
  }
  return undefined;
}

/** Why `subject` cannot be recorded as an author (the encoding and the database need it printable and bounded); undefined when it can. */
export function authorRefusal(subject: string): string | undefined {
  const bytes = Buffer.byteLength(subject, 'utf8');
  if (bytes === 0) return 'the caller has an empty subject';
  if (bytes > MAX_AUTHOR_BYTES) return `the caller's subject is ${bytes} bytes of UTF-8; the log records authors of at most ${MAX_AUTHOR_BYTES}`;
  // eslint-disable-next-line no-control-regex -- control characters are exactly what is refused
  if (/[\u0000-\u001f\u007f]/.test(subject)) return "the caller's subject contains control characters";
  // A lone surrogate has no UTF-8 form: the hash would cover U+FFFD instead of the stored text.
  if (Buffer.from(subject, 'utf8').toString('utf8') !== subject) return "the caller's subject is not valid Unicode";
  return undefined;
}

/**
 * Whose namespace the idempotency keys of `caller`'s append to `partition` live in. An audit
 * partition's keys are the partition's (its owner is its only writer, and a relay that moves from
 * the monolith's workload to the service's own must still find the keys it wrote before); any
 * other partition's keys are the author's, so no caller can take another's key first.
 */
export function idempotencyKeyOwner(partition: string, caller: Caller): string {
  return auditFamilyOf(partition) !== undefined ? PARTITION_WIDE_KEY_OWNER : caller.subject;
}
