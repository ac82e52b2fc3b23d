/**
 * Three real replicas on one shared adapter store behind a real HAProxy (the shipped config), on
 * loopback: adapter affinity, read-through of uploads, failover when a replica dies, and replace
 * and delete seen by every replica.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { tempDir } from '../helpers/adapters.js';
import { adapterFiles, chat, counterBy, haproxyInstalled, startCluster, upload, type Cluster } from '../../src/testing/index.js';

const ADAPTERS = ['alpha', 'bravo', 'charlie', 'delta', 'echo', 'foxtrot'];
const ROUNDS = 3;

const skip = haproxyInstalled()
  ? false
  : 'haproxy is not installed (apt-get install -y haproxy): the multi-replica test needs a real balancer';

/** Per adapter, which replicas (by index) served how many generation requests. */
async function servedBy(cluster: Cluster, alive: number[]): Promise<Map<string, Map<number, number>>> {
  const out = new Map<string, Map<number, number>>();
  for (const i of alive) {
    for (const [adapter, n] of await counterBy(cluster.replicas[i]!.url, 'loraserve_requests_total', 'adapter')) {
      if (!out.has(adapter)) out.set(adapter, new Map());
      out.get(adapter)!.set(i, n);
    }
  }
  return out;
}

/** Requests served between two `servedBy` readings. */
function diff(now: Map<string, Map<number, number>>, then: Map<string, Map<number, number>>): Map<string, Map<number, number>> {
  const out = new Map<string, Map<number, number>>();
  for (const [adapter, by] of now) {
    const added = new Map<number, number>();
    for (const [i, n] of by) if (n > (then.get(adapter)?.get(i) ?? 0)) added.set(i, n - (then.get(adapter)?.get(i) ?? 0));
    out.set(adapter, added);
  }
  return out;
}

async function allOk(cluster: Cluster, names: string[]): Promise<void> {
  const replies = await Promise.all(names.map((name) => chat(cluster.url, name)));
  for (const [i, r] of replies.entries()) assert.equal(r.status, 200, `${names[i]}: ${await r.text()}`);
}

describe('many replicas behind HAProxy', { skip }, () => {
  let cluster: Cluster;
  let root: string;
  before(async () => {
    root = tempDir('loraserve-scale-');
    cluster = await startCluster(root, 3, ['--threads', '1', '--slots', '4']);
  });
  after(() => cluster?.stop());

  it('an adapter uploaded through the balancer is served, each adapter by one replica', async () => {
    for (const [i, name] of ADAPTERS.entries()) {
      const r = await upload(cluster.url, name, await adapterFiles(cluster.modelDir, join(root, `src-${name}`), 4, i + 1));
      assert.equal(r.status, 201, await r.text());
    }
    for (let round = 0; round < ROUNDS; round++) await allOk(cluster, ADAPTERS);
    const served = await servedBy(cluster, [0, 1, 2]);
    for (const name of ADAPTERS) {
      const by = served.get(name);
      assert.equal(by?.size, 1, `${name} was served by replicas ${JSON.stringify([...(by ?? [])])}`);
      assert.equal([...by!.values()][0], ROUNDS);
    }
  });

  it('replace and delete through the balancer are seen by every replica', async () => {
    const r = await upload(cluster.url, 'alpha', await adapterFiles(cluster.modelDir, join(root, 'alpha-v2'), 8, 99));
    assert.equal(r.status, 200, await r.text());
    for (const replica of cluster.replicas) {
      const info = (await (await fetch(`${replica.url}/v1/adapters/alpha`)).json()) as { r: number };
      assert.equal(info.r, 8, `${replica.url} still describes the old alpha`);
    }
    // The replica that owns alpha had the old version in a slot: the next request loads the new one.
    assert.equal((await chat(cluster.url, 'alpha')).status, 200);
    const tiers = await Promise.all(
      cluster.replicas.map(async (rep) => ((await (await fetch(`${rep.url}/v1/adapters/alpha`)).json()) as { tier: string }).tier),
    );
    assert.deepEqual(tiers.filter((t) => t === 'device').length, 1, `the new alpha is on one replica's device: ${tiers}`);

    const del = await fetch(`${cluster.url}/v1/adapters/bravo`, { method: 'DELETE' });
    assert.equal(del.status, 200, await del.text());
    for (const replica of cluster.replicas) {
      assert.equal((await fetch(`${replica.url}/v1/adapters/bravo`)).status, 404, `${replica.url} still has bravo`);
      const listed = ((await (await fetch(`${replica.url}/v1/models`)).json()) as { data: Array<{ id: string }> }).data.map((m) => m.id);
      assert.ok(!listed.includes('bravo') && listed.includes('charlie'), `${replica.url} lists ${listed}`);
    }
    const gone = await chat(cluster.url, 'bravo');
    assert.equal(gone.status, 404);
    assert.equal(((await gone.json()) as { error: { code: string } }).error.code, 'model_not_found');
  });

  it('killing a replica moves its adapters to the others once the health check notices, with no failed request', async () => {
    const names = ADAPTERS.filter((n) => n !== 'bravo');
    const before = await servedBy(cluster, [0, 1, 2]);
    const owned = [0, 1, 2].map((i) => names.filter((n) => before.get(n)?.has(i)));
    const victim = owned.reduce((best, o, i) => (o.length > owned[best]!.length ? i : best), 0);
    cluster.replicas[victim]!.proc.kill('SIGKILL');
    await cluster.replicas[victim]!.exited;
    await cluster.waitStatus(`r${victim + 1}`, 'DOWN');

    const survivors = [0, 1, 2].filter((i) => i !== victim);
    const start = await servedBy(cluster, survivors);
    for (let round = 0; round < ROUNDS; round++) await allOk(cluster, names);
    const moved = diff(await servedBy(cluster, survivors), start);
    for (const name of names) {
      const by = moved.get(name);
      assert.equal(by?.size, 1, `${name} after the failover was served by ${JSON.stringify([...(by ?? [])])}`);
      assert.equal([...by!.values()][0], ROUNDS);
    }
    // Adapters of the survivors stay where they were (consistent hashing moves only the victim's).
    for (const i of survivors) for (const name of owned[i]!) assert.ok(moved.get(name)!.has(i), `${name} left replica ${i}`);
  });
});
