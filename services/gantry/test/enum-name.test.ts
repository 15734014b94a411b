// The names the CLI prints for proto enum values: the value's name without the enum's prefix.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { approvalsv1, flagsv1, settlementv1 } from '@gantry/proto';
import { enumName } from '../src/commands/enum-name.js';

test('a value loses its enum prefix, and only the prefix', () => {
  assert.equal(enumName(flagsv1.flagStateToJSON, 'FLAG_STATE_')(flagsv1.FlagState.FLAG_STATE_ENABLED), 'ENABLED');
  assert.equal(enumName(settlementv1.settlementOutcomeToJSON, 'SETTLEMENT_OUTCOME_')(settlementv1.SettlementOutcome.SETTLEMENT_OUTCOME_WINNINGS), 'WINNINGS');
  assert.equal(enumName(approvalsv1.approvalTypeToJSON, 'APPROVAL_TYPE_')(approvalsv1.ApprovalType.APPROVAL_TYPE_LARGE_TRANSACTION), 'LARGE_TRANSACTION');
});

test('a value the client does not know keeps its whole name (UNRECOGNIZED)', () => {
  assert.equal(enumName(flagsv1.flagStateToJSON, 'FLAG_STATE_')(-1 as flagsv1.FlagState), 'UNRECOGNIZED');
  assert.equal(enumName(flagsv1.flagStateToJSON, 'FLAG_STATE_')(999 as flagsv1.FlagState), 'UNRECOGNIZED');
});
