// The wake-up other replicas get after a publish commits (delivery/queued-notifier.ts): every burst
// of signals reaches them, with at most one NOTIFY under way and one more queued behind it.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { silentLogger } from '@gantry/kit';
import { QueuedNotifier } from '../src/delivery/queued-notifier.js';

/** A notify that stays under way until released, counting calls. */
function heldNotify(fail = false) {
  const pending: (() => void)[] = [];
  let calls = 0;
  const notify = () => {
    calls++;
    return new Promise<void>((resolve, reject) => pending.push(() => (fail ? reject(new Error('the database is gone')) : resolve())));
  };
  return { notify, calls: () => calls, release: async () => { pending.shift()?.(); await new Promise((r) => setImmediate(r)); } };
}

describe('the queued-deliveries notifier', () => {
  test('signals while a NOTIFY is under way collapse into one more, sent after it; a later signal sends again', async () => {
    const n = heldNotify();
    const notifier = new QueuedNotifier(n.notify, silentLogger());
    notifier.signal();
    for (let i = 0; i < 50; i++) notifier.signal();
    assert.equal(n.calls(), 1, 'one NOTIFY at a time');
    await n.release();
    assert.equal(n.calls(), 2, 'the signals that came meanwhile are told, once');
    await n.release();
    assert.equal(n.calls(), 2, 'nothing more without a new signal');
    notifier.signal();
    assert.equal(n.calls(), 3);
    await n.release();
    await notifier.drain();
  });

  test('a failed NOTIFY is logged and the next signal sends again', async () => {
    const n = heldNotify(true);
    const notifier = new QueuedNotifier(n.notify, silentLogger());
    notifier.signal();
    await n.release();
    await notifier.drain();
    notifier.signal();
    assert.equal(n.calls(), 2);
    await n.release();
    await notifier.drain();
  });
});
