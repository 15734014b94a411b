import { Command, Option } from 'commander';
import { FLAGS_READ_SCOPE, FLAGS_WRITE_SCOPE, FlagsClient } from '@gantry/kit';
import { flagsv1 } from '@gantry/proto';
import { printJson, withConnection, withServiceClient, type Connection, type ConnectionOptions } from '../connection.js';
import { enumName } from './enum-name.js';

const out = (line: string): void => {
  process.stdout.write(line + '\n');
};
const withClient = <T>(opts: ConnectionOptions, scopes: string[], fn: (c: Connection, flags: FlagsClient) => Promise<T>) =>
  withServiceClient(opts, scopes, (c) => new FlagsClient(c.address, c.credentials, c.options, c.metadata), fn);

const stateName = enumName(flagsv1.flagStateToJSON, 'FLAG_STATE_');
const eventTypeName = enumName(flagsv1.flagEventTypeToJSON, 'FLAG_EVENT_TYPE_');

function flagJson(f: flagsv1.Flag) {
  return {
    key: f.key,
    state: stateName(f.state),
    variants: f.variants,
    defaultVariant: f.defaultVariant,
    targeting: f.targeting ?? null,
    metadata: f.metadata,
    source: f.source,
    version: f.version,
    updatedAt: f.updatedAt?.toISOString() ?? null,
  };
}

const variantsText = (f: flagsv1.Flag) => Object.entries(f.variants).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(' ');

/** A JSON object option, or an Error saying what was expected. */
function parseObject(flag: string, text: string, example: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new Error(`${flag} is not valid JSON (${(err as Error).message}); expected an object such as '${example}'`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new Error(`${flag} must be a JSON object such as '${example}'; got ${text}`);
  return value as Record<string, unknown>;
}

const parseVersion = (flag: string) => (v: string) => {
  if (!/^\d+$/.test(v)) throw new Error(`${flag} must be a whole number (a flag's version, from 'gantry flags get'), got ${v}`);
  return BigInt(v);
};

interface SetOptions extends ConnectionOptions {
  variants?: string;
  default?: string;
  bool?: string;
  state: 'enabled' | 'disabled';
  targeting?: string;
  metadata?: string;
  expectedVersion?: bigint;
}

/** The flag `gantry flags set` sends. */
export function flagFromOptions(key: string, opts: SetOptions): flagsv1.Flag {
  let variants: Record<string, unknown>;
  let defaultVariant: string;
  if (opts.bool !== undefined) {
    if (opts.variants !== undefined || opts.default !== undefined) throw new Error('--bool sets the variants (on/off) and the default itself; leave out --variants and --default, or --bool');
    if (opts.bool !== 'true' && opts.bool !== 'false') throw new Error(`--bool must be true or false, got ${opts.bool}`);
    variants = { on: true, off: false };
    defaultVariant = opts.bool === 'true' ? 'on' : 'off';
  } else {
    if (opts.variants === undefined || opts.default === undefined) throw new Error(`give --variants '{"on":true,"off":false}' and --default on, or the shorthand --bool true|false`);
    variants = parseObject('--variants', opts.variants, '{"on":true,"off":false}');
    defaultVariant = opts.default;
  }
  return {
    key,
    state: opts.state === 'disabled' ? flagsv1.FlagState.FLAG_STATE_DISABLED : flagsv1.FlagState.FLAG_STATE_ENABLED,
    variants,
    defaultVariant,
    targeting: opts.targeting !== undefined ? parseObject('--targeting', opts.targeting, '{"fractional":[["on",10],["off",90]]}') : undefined,
    metadata: opts.metadata !== undefined ? parseObject('--metadata', opts.metadata, '{"owner":"payments"}') : {},
    // The service records who wrote it (principal:<subject>); a caller cannot name another writer.
    source: '',
    version: 0n,
    updatedAt: undefined,
  };
}

function printFlag(c: Connection, f: flagsv1.Flag): void {
  if (c.json) return printJson(flagJson(f));
  const rows: [string, string][] = [
    ['key', f.key],
    ['state', stateName(f.state)],
    ['default', f.defaultVariant],
    ['variants', variantsText(f)],
    ['targeting', f.targeting ? JSON.stringify(f.targeting) : '-'],
    ['metadata', Object.keys(f.metadata).length > 0 ? JSON.stringify(f.metadata) : '-'],
    ['source', f.source || '-'],
    ['version', f.version.toString()],
    ['updated', f.updatedAt?.toISOString() ?? '-'],
  ];
  for (const [name, value] of rows) out(`${name.padEnd(10)}${value}`);
}

/** `gantry flags ...`: a service's feature flags (FlagsService) over the network. */
export function flagsCommand(): Command {
  const cmd = new Command('flags').description("set, read, delete and watch a service's feature flags (flagd rules; the embedded `npm start` by default)");

  withConnection(cmd.command('set <key>').description('create or replace a flag'))
    .option('--variants <json>', 'variant name to value, all of one type, e.g. \'{"on":true,"off":false}\'')
    .option('--default <variant>', 'the variant served when no targeting rule matches')
    .option('--bool <true|false>', 'shorthand for a boolean flag: variants on/off, default from the value')
    .addOption(new Option('--state <state>', 'disabled makes evaluation return the caller default').choices(['enabled', 'disabled']).default('enabled'))
    .option('--targeting <json>', 'flagd JSONLogic rule returning a variant name, e.g. \'{"fractional":[["on",10],["off",90]]}\'')
    .option('--metadata <json>', 'flag metadata (string, number or boolean values)')
    .option('--expected-version <n>', "write only if the flag is at this version (0 = only if it does not exist yet)", parseVersion('--expected-version'))
    .action(async (key: string, opts: SetOptions) => {
      const flag = flagFromOptions(key, opts);
      await withClient(opts, [FLAGS_WRITE_SCOPE], async (c, flags) => {
        const r = await flags.put(flag, opts.expectedVersion);
        if (c.json) return printJson({ created: r.created, flag: flagJson(r.flag!) });
        out(`${r.created ? 'created' : 'replaced'} ${r.flag!.key} at version ${r.flag!.version}: ${stateName(r.flag!.state)}, default ${r.flag!.defaultVariant} (${variantsText(r.flag!)})`);
      });
    });

  withConnection(cmd.command('get <key>').description('print one flag')).action(async (key: string, opts: ConnectionOptions) =>
    withClient(opts, [FLAGS_READ_SCOPE], async (c, flags) => printFlag(c, await flags.get(key))),
  );

  withConnection(cmd.command('list').description('print every flag, in key order')).action(async (opts: ConnectionOptions) =>
    withClient(opts, [FLAGS_READ_SCOPE], async (c, flags) => {
      const r = await flags.list();
      if (c.json) return printJson({ version: r.version, flags: r.flags.map(flagJson) });
      if (r.flags.length === 0) return out(`no flags (store version ${r.version}); create one with: gantry flags set <key> --bool true`);
      const rows = r.flags.map((f) => [f.key, stateName(f.state), f.defaultVariant, f.targeting ? 'yes' : '-', f.version.toString(), variantsText(f)]);
      const header = ['KEY', 'STATE', 'DEFAULT', 'TARGETING', 'VERSION', 'VARIANTS'];
      const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
      for (const row of [header, ...rows]) out(row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]! + 2))).join('').trimEnd());
      out(`${r.flags.length} flag${r.flags.length === 1 ? '' : 's'} at store version ${r.version}`);
    }),
  );

  withConnection(cmd.command('delete <key>').description('delete a flag (deleting a missing flag succeeds)'))
    .option('--expected-version <n>', 'delete only if the flag is at this version', parseVersion('--expected-version'))
    .action(async (key: string, opts: ConnectionOptions & { expectedVersion?: bigint }) =>
      withClient(opts, [FLAGS_WRITE_SCOPE], async (c, flags) => {
        const existed = await flags.delete(key, opts.expectedVersion);
        if (c.json) return printJson({ key, existed });
        out(existed ? `deleted ${key}` : `${key} did not exist; nothing deleted`);
      }),
    );

  withConnection(cmd.command('watch').description('print flag changes as they happen (Ctrl-C to stop)'))
    // A bigint default needs its description spelled out: commander's help prints defaults as JSON.
    .addOption(new Option('--from <version>', 'print changes after this version (0 = from now)').argParser(parseVersion('--from')).default(0n, '0'))
    .action(async (opts: ConnectionOptions & { from: bigint }) =>
      withClient(opts, [FLAGS_READ_SCOPE], async (c, flags) => {
        const stop = new AbortController();
        process.once('SIGINT', () => stop.abort());
        try {
          for await (const e of flags.watch(opts.from, stop.signal)) {
            const type = eventTypeName(e.type);
            if (c.json) printJson({ type, version: e.version, flag: e.type === flagsv1.FlagEventType.FLAG_EVENT_TYPE_PUT && e.flag ? flagJson(e.flag) : e.flag ? { key: e.flag.key } : null });
            else if (e.type === flagsv1.FlagEventType.FLAG_EVENT_TYPE_BOOKMARK) out(`watching from version ${e.version}`);
            else if (e.type === flagsv1.FlagEventType.FLAG_EVENT_TYPE_DELETED) out(`${e.version}\tdeleted\t${e.flag?.key}`);
            else out(`${e.version}\tput\t${e.flag?.key}\t${stateName(e.flag!.state)} default ${e.flag!.defaultVariant}`);
          }
        } catch (err) {
          if (!stop.signal.aborted) throw err;
        }
      }),
    );

  return cmd;
}
