import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { FairQueue, type FairItem } from '../../src/engine/fair-queue.js';

interface Item extends FairItem {
  id: string;
}

/** A queue over plain items, with the running set held here as the scheduler holds its active rows. */
function queue() {
  const running: Item[] = [];
  const q = new FairQueue<Item>(
    (i) => i,
    () => running,
  );
  const item = (tenant: string, id: string, priority = 0, outputLeft = 0): Item => ({ id, tenant, priority, promptLeft: 0, outputLeft });
  const admitAll = (rows: number) => {
    const ids: string[] = [];
    while (running.length < rows) {
      const next = q.admit();
      if (!next) break;
      running.push(next);
      ids.push(next.id);
    }
    return ids;
  };
  const finish = (id: string) =>
    running.splice(
      running.findIndex((i) => i.id === id),
      1,
    );
  const counter = (tenant: string) => q.service().find((t) => t.tenant === tenant)!.counter;
  return { q, running, item, admitAll, finish, counter };
}

describe('fair queue (virtual token counters)', () => {
  it('gives the next row to the tenant with the smallest counter, FCFS within a tenant', () => {
    const { q, item, admitAll } = queue();
    q.push(item('a', 'a1'), item('a', 'a2'), item('a', 'a3'));
    assert.deepEqual(admitAll(1), ['a1']);
    q.charge('a', { prompt: 0, cached: 0, completion: 10 });
    q.push(item('b', 'b1'), item('b', 'b2'));
    // b became active while a was: lifted to a's counter, then the tie goes to the tenant with fewer rows.
    assert.deepEqual(admitAll(2), ['b1']);
    q.charge('b', { prompt: 4, cached: 0, completion: 0 });
    assert.deepEqual(admitAll(3), ['a2']);
    assert.equal(q.length, 2);
  });

  it('rows freed together are split by weight: running requests count with what they are still committed to', () => {
    const { q, running, item, admitAll } = queue();
    q.setWeight('heavy', 3);
    for (let i = 0; i < 8; i++) q.push(item('light', `l${i}`, 0, 10), item('heavy', `h${i}`, 0, 10));
    const tenants = admitAll(8).map((id) => id[0]);
    assert.deepEqual([tenants.filter((t) => t === 'l').length, tenants.filter((t) => t === 'h').length], [2, 6]);
    assert.equal(running.length, 8);
  });

  it('work-conserving: a lone tenant takes every free row', () => {
    const { q, item, admitAll } = queue();
    for (let i = 0; i < 5; i++) q.push(item('a', `a${i}`));
    assert.deepEqual(admitAll(4), ['a0', 'a1', 'a2', 'a3']);
  });

  it('counters are weighted: service is divided by the weight', () => {
    const { q, counter } = queue();
    q.setWeight('heavy', 4);
    q.charge('heavy', { prompt: 8, cached: 100, completion: 4 });
    q.charge('light', { prompt: 8, cached: 0, completion: 4 });
    // prompt tokens cost 1, generated tokens 2; cached prompt tokens cost nothing
    assert.equal(counter('light'), 16);
    assert.equal(counter('heavy'), 4);
    assert.throws(() => q.setWeight('x', 0), /positive/);
  });

  it('a tenant that comes back after idling is lifted to the others, not credited for its idle time', () => {
    const { q, item, admitAll, finish, counter } = queue();
    q.push(item('b', 'b0'));
    admitAll(1);
    q.charge('b', { prompt: 0, cached: 0, completion: 5 });
    finish('b0');
    // b is idle while a is served for a long time
    q.push(item('a', 'a0'));
    admitAll(1);
    q.charge('a', { prompt: 0, cached: 0, completion: 500 });
    q.push(item('b', 'b1'));
    assert.equal(counter('b'), counter('a'), 'lifted to the smallest active counter');
    // with nobody active, a newcomer starts level with the most served tenant
    finish('a0');
    assert.equal(q.admit()?.id, 'b1');
    q.push(item('c', 'c0'));
    assert.equal(counter('c'), counter('a'));
  });

  it('priority orders requests within a tenant, never across tenants', () => {
    const { q, item, admitAll } = queue();
    q.push(item('a', 'late', 5), item('a', 'urgent', -1), item('a', 'plain'));
    assert.deepEqual(admitAll(3), ['urgent', 'plain', 'late']);
  });

  it('pauses the latest, lowest-priority row of the most served tenant for a tenant below its share; it resumes first', () => {
    const { q, running, item, admitAll, counter } = queue();
    q.push(item('a', 'a0'), item('a', 'a1'), item('a', 'a2', 1), item('a', 'a3'), item('a', 'a4', 1));
    assert.deepEqual(admitAll(4), ['a0', 'a1', 'a3', 'a2']);
    q.charge('a', { prompt: 0, cached: 0, completion: 40 });
    q.push(item('b', 'b0'));
    assert.equal(counter('b'), counter('a'));
    const swap = q.preempt(4)!;
    assert.equal(swap.admit.id, 'b0');
    assert.equal(swap.pause.id, 'a2', 'the lowest priority among the running');
    running.splice(running.indexOf(swap.pause), 1, swap.admit);
    assert.equal(q.service().find((t) => t.tenant === 'a')!.preemptions, 1);
    // b holds 1 of its 2 rows, a 3 of its 2: b (with nothing waiting) is owed nothing more
    assert.equal(q.preempt(4), null);
    running.splice(running.indexOf(swap.admit), 1);
    assert.equal(q.admit()?.id, 'a2', 'the paused request resumes ahead of later ones of its tenant');
  });

  it('shares that do not divide the rows evenly cause no churn', () => {
    const { q, item, admitAll } = queue();
    for (const t of ['a', 'b', 'c']) for (let i = 0; i < 6; i++) q.push(item(t, `${t}${i}`));
    admitAll(32 / 4);
    // 8 rows over 3 tenants: 3/3/2, each within a row of its 8/3 share
    q.charge('a', { prompt: 0, cached: 0, completion: 30 });
    q.charge('b', { prompt: 0, cached: 0, completion: 30 });
    assert.equal(q.preempt(8), null);
  });

  it('removes cancelled waiting items', () => {
    const { q, item } = queue();
    q.push(item('a', 'a0'), item('b', 'b0'), item('a', 'a1'));
    assert.deepEqual(
      q.removeWhere((i) => i.id !== 'b0').map((i) => i.id),
      ['a0', 'a1'],
    );
    assert.equal(q.length, 1);
    assert.deepEqual(
      [...q.items()].map((i) => i.id),
      ['b0'],
    );
  });
});
