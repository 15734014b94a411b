import { readFileSync } from 'node:fs';
import { Command, Option } from 'commander';
import { streamOf, unary } from '@gantry/kit';
import { logv1 } from '@gantry/proto';
import { LogServiceClient, verifyCheckpoint, verifyCheckpointConsistency, verifyEntryInclusion } from '@gantry/log/client';
import { connect, printJson, withConnection, type Connection, type ConnectionOptions } from '../connection.js';

const client = (c: Connection) => new LogServiceClient(c.address, c.credentials, c.options);
type LogClient = ReturnType<typeof client>;

const hex = (b: Buffer) => b.toString('hex');
const short = (b: Buffer) => hex(b).slice(0, 16);
const parseSeq = (flag: string) => (v: string) => {
  if (!/^\d+$/.test(v)) throw new Error(`${flag} must be a whole number, got ${v}`);
  return BigInt(v);
};

/** An entry's author for a person: entries from before authors were recorded have none. */
const authorText = (author: string) => author || '-';

/** One entry per line: seq, time, short hash, author, data (last, since it may contain tabs). */
function printEntry(c: Connection, e: logv1.Entry): void {
  if (c.json) {
    return printJson({ partition: e.partition, seq: e.seq, timestamp: e.timestamp?.toISOString(), author: e.author || null, data: e.data.toString('base64'), prevHash: hex(e.prevHash), hash: hex(e.hash) });
  }
  const text = e.data.toString('utf8');
  const printable = /^[\x20-\x7e\t]*$/.test(text) ? text : `<${e.data.length} bytes> ${e.data.toString('base64')}`;
  process.stdout.write(`${e.seq}\t${e.timestamp?.toISOString()}\t${short(e.hash)}\t${authorText(e.author)}\t${printable}\n`);
}

async function withClient<T>(opts: ConnectionOptions, scopes: string[], fn: (c: Connection, log: LogClient) => Promise<T>): Promise<T> {
  const c = await connect(opts, scopes);
  const log = client(c);
  try {
    return await fn(c, log);
  } finally {
    log.close();
  }
}

/** --verifier-key: the note key a checkpoint must be signed with, instead of the one the server sends. */
const withVerifierKey = (sub: Command) => sub.option('--verifier-key <vkey>', 'pinned note verifier key (env GANTRY_LOG_VERIFIER_KEY)', process.env.GANTRY_LOG_VERIFIER_KEY);

/** `gantry log ...`: the log service over the network. */
export function logCommand(): Command {
  const cmd = new Command('log').description('append to, read, follow and verify the log service');
  appendCommand(cmd);
  readCommand(cmd);
  tailCommand(cmd);
  verifyCommand(cmd);
  partitionsCommand(cmd);
  lastCommand(cmd);
  checkpointCommand(cmd);
  proofCommand(cmd);
  return cmd;
}

/** `gantry log append`: one entry, its data from the argument or stdin. */
function appendCommand(parent: Command): Command {
  return withConnection(parent.command('append <partition> [data]').description('append one entry (data from the argument, or stdin when omitted)'))
    .option('--idempotency-key <key>', 'append only if this key (1-128 printable ASCII, no spaces) is new among your keys in the partition; a repeat prints the earlier entry', '')
    .action(async (partition: string, data: string | undefined, opts: ConnectionOptions & { idempotencyKey: string }) =>
      withClient(opts, ['log.append'], async (c, log) => {
        const payload = data !== undefined ? Buffer.from(data, 'utf8') : readFileSync(0);
        const r = await unary(log.append, log, { partition, data: payload, idempotencyKey: opts.idempotencyKey }, c.metadata());
        if (c.json) printJson({ partition, seq: r.seq, timestamp: r.timestamp?.toISOString(), author: r.author || null, hash: hex(r.hash), prevHash: hex(r.prevHash), duplicate: r.duplicate });
        else if (r.duplicate) process.stdout.write(`already appended: ${partition} seq ${r.seq} hash ${hex(r.hash)} by ${authorText(r.author)} (key ${opts.idempotencyKey}; nothing written)\n`);
        else process.stdout.write(`appended ${partition} seq ${r.seq} hash ${hex(r.hash)} by ${r.author}\n`);
      }),
    );
}

/** `gantry log read`: a range of entries in seq order. */
function readCommand(parent: Command): Command {
  return withConnection(parent.command('read <partition>').description('print entries in seq order'))
    // A bigint default needs its description spelled out: commander's help prints defaults as JSON.
    .addOption(new Option('--from <seq>', 'first seq').argParser(parseSeq('--from')).default(0n, '0'))
    .addOption(new Option('--limit <n>', 'most entries (0 = to the end)').argParser(parseSeq('--limit')).default(0n, '0'))
    .action(async (partition: string, opts: ConnectionOptions & { from: bigint; limit: bigint }) =>
      withClient(opts, ['log.read'], async (c, log) => {
        for await (const msg of streamOf(log.read({ partition, startSeq: opts.from, limit: opts.limit }, c.metadata()))) for (const e of msg.entries) printEntry(c, e);
      }),
    );
}

/** `gantry log tail`: the last entries, and with -f every new one until Ctrl-C. */
function tailCommand(parent: Command): Command {
  return withConnection(parent.command('tail <partition>').description('print the last entries; with -f keep following new ones'))
    .option('-n, --lines <n>', 'how many existing entries to print first', '10')
    .option('-f, --follow', 'keep the stream open and print entries as they are appended', false)
    .action(async (partition: string, opts: ConnectionOptions & { lines: string; follow: boolean }) =>
      withClient(opts, ['log.read'], async (c, log) => {
        const last = Number(opts.lines);
        if (!Number.isInteger(last) || last < 0) throw new Error('-n must be a whole number');
        const call = log.tail({ partition, last, follow: opts.follow }, c.metadata());
        process.once('SIGINT', () => call.cancel());
        try {
          for await (const msg of streamOf(call)) for (const e of msg.entries) printEntry(c, e);
        } catch (err) {
          if ((err as { code?: number }).code !== 1 /* CANCELLED by Ctrl-C */) throw err;
        }
      }),
    );
}

/** `gantry log verify`: the server recomputes the hash chain; exit code 1 when it is broken. */
function verifyCommand(parent: Command): Command {
  return withConnection(parent.command('verify <partition>').description('recompute the hash chain on the server and report the first bad seq')).action(
    async (partition: string, opts: ConnectionOptions) =>
      withClient(opts, ['log.read'], async (c, log) => {
        const r = await unary(log.verify, log, { partition }, c.metadata(), 600_000);
        if (c.json) printJson({ partition, valid: r.valid, count: r.count, finalHash: hex(r.finalHash), firstBadSeq: r.firstBadSeq, reason: r.reason });
        else if (r.valid) process.stdout.write(`${partition}: valid, ${r.count} entries, final hash ${hex(r.finalHash)}\n`);
        else process.stdout.write(`${partition}: BROKEN at seq ${r.firstBadSeq}: ${r.reason} (${r.count} entries checked)\n`);
        if (!r.valid) process.exitCode = 1;
      }),
  );
}

/** `gantry log partitions`: every partition, page after page. */
function partitionsCommand(parent: Command): Command {
  return withConnection(parent.command('partitions').description('list partitions'))
    .option('--prefix <prefix>', 'only names starting with this', '')
    .action(async (opts: ConnectionOptions & { prefix: string }) =>
      withClient(opts, ['log.read'], async (c, log) => {
        let pageToken = '';
        do {
          const r = await unary(log.listPartitions, log, { prefix: opts.prefix, pageSize: 1000, pageToken }, c.metadata());
          for (const p of r.partitions) {
            if (c.json) printJson({ name: p.name, size: p.size, lastHash: hex(p.lastHash), createdAt: p.createdAt?.toISOString(), lastAppendedAt: p.lastAppendedAt?.toISOString() });
            else process.stdout.write(`${p.name}\t${p.size} entries\tlast ${p.lastAppendedAt?.toISOString() ?? '-'}\n`);
          }
          pageToken = r.nextPageToken;
        } while (pageToken);
      }),
    );
}

/** `gantry log last`: the newest entry of a partition. */
function lastCommand(parent: Command): Command {
  return withConnection(parent.command('last <partition>').description('print the newest entry')).action(async (partition: string, opts: ConnectionOptions) =>
    withClient(opts, ['log.read'], async (c, log) => {
      const r = await unary(log.getLastEntry, log, { partition }, c.metadata());
      printEntry(c, r.entry!);
    }),
  );
}

/** `gantry log checkpoint`: the partition's signed checkpoint, verified here before it is printed. */
function checkpointCommand(parent: Command): Command {
  return withVerifierKey(
    withConnection(parent.command('checkpoint <partition>').description("print the partition's signed checkpoint (a C2SP note); save it to check consistency later")),
  )
    .action(async (partition: string, opts: ConnectionOptions & { verifierKey?: string }) =>
      withClient(opts, ['log.read'], async (c, log) => {
        const r = await unary(log.getCheckpoint, log, { partition }, c.metadata());
        const verified = verifyCheckpoint(r.checkpoint, opts.verifierKey ?? r.verifierKey, { partition });
        if (c.json) printJson({ partition, size: verified.size, rootHash: hex(verified.rootHash), checkpoint: r.checkpoint, verifierKey: r.verifierKey });
        else process.stdout.write(r.checkpoint);
        if (!opts.verifierKey) process.stderr.write(`note: verified with the key the server sent (${r.verifierKey}); pin it with --verifier-key\n`);
      }),
    );
}

/** `gantry log proof`: inclusion (and with --since consistency) checked on this machine; exit code 1 when a proof fails. */
function proofCommand(parent: Command): Command {
  return withVerifierKey(
    withConnection(parent.command('proof <partition> <seq>').description('prove, on this machine, that entry <seq> is in the signed tree (and, with --since, that the log only grew)')),
  )
    .option('--since <file>', 'an earlier checkpoint note (from `gantry log checkpoint`) to prove consistency with')
    .action(async (partition: string, seqText: string, opts: ConnectionOptions & { verifierKey?: string; since?: string }) =>
      withClient(opts, ['log.read'], async (c, log) => {
        const seq = parseSeq('<seq>')(seqText);
        const cp = await unary(log.getCheckpoint, log, { partition }, c.metadata());
        const vkey = opts.verifierKey ?? cp.verifierKey;
        // Everything below is checked here; the server's word is only ever an input.
        const checkpoint = verifyCheckpoint(cp.checkpoint, vkey, { partition });
        let entry: logv1.Entry | undefined;
        for await (const msg of streamOf(log.read({ partition, startSeq: seq, limit: 1n }, c.metadata()))) entry = msg.entries[0];
        if (!entry) throw new Error(`partition ${partition} has no entry ${seq}`);
        const proof = await unary(log.getInclusionProof, log, { partition, seq, treeSize: checkpoint.size }, c.metadata());
        const included = verifyEntryInclusion(entry, { seq: proof.seq, treeSize: proof.treeSize, hashes: proof.hashes }, checkpoint);
        let consistent: boolean | undefined;
        if (opts.since) {
          const older = verifyCheckpoint(readFileSync(opts.since, 'utf8'), vkey, { partition });
          const cons = await unary(log.getConsistencyProof, log, { partition, oldSize: older.size, newSize: checkpoint.size }, c.metadata());
          consistent = older.size === 0n || verifyCheckpointConsistency(older, checkpoint, { oldSize: cons.oldSize, newSize: cons.newSize, hashes: cons.hashes });
        }
        // The leaf covers the author, so an included entry proves who the log recorded as its appender.
        const author = entry.author ? `appended by ${entry.author}` : 'no recorded author: appended before the log recorded authors';
        if (c.json) printJson({ partition, seq, author: entry.author || null, treeSize: checkpoint.size, rootHash: hex(checkpoint.rootHash), included, consistent });
        else {
          process.stdout.write(`entry ${seq} of ${partition} (${author}) ${included ? 'IS' : 'is NOT'} in the signed tree of ${checkpoint.size} entries (root ${hex(checkpoint.rootHash)})\n`);
          if (consistent !== undefined) process.stdout.write(`the log ${consistent ? 'only grew' : 'was REWRITTEN'} since the checkpoint in ${opts.since}\n`);
        }
        if (!opts.verifierKey) process.stderr.write(`note: verified with the key the server sent (${cp.verifierKey}); pin it with --verifier-key\n`);
        if (!included || consistent === false) process.exitCode = 1;
      }),
    );
}
