import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Command } from 'commander';
import { adminCommand } from '../src/commands/admin.js';
import { approvalsCommand } from '../src/commands/approvals.js';
import { devKeyCommand } from '../src/commands/dev-key.js';
import { keysCommand } from '../src/commands/keys.js';
import { flagsCommand } from '../src/commands/flags.js';
import { logCommand } from '../src/commands/log.js';
import { settlementCommand } from '../src/commands/settlement.js';

function* commandsUnder(cmd: Command): Generator<Command> {
  yield cmd;
  for (const sub of cmd.commands) yield* commandsUnder(sub);
}

test('every subcommand renders its --help, options with bigint defaults included', () => {
  let rendered = 0;
  for (const top of [adminCommand(), logCommand(), settlementCommand(), approvalsCommand(), flagsCommand(), devKeyCommand(), keysCommand()]) {
    for (const cmd of commandsUnder(top)) {
      const help = cmd.helpInformation();
      for (const option of cmd.options) assert.ok(help.includes(option.long ?? option.flags), `${cmd.name()} --help lists ${option.flags}`);
      rendered++;
    }
  }
  assert.ok(rendered > 20, `${rendered} commands`);
});
