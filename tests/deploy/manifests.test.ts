/**
 * The Kubernetes manifests and the HAProxy config cannot drift from the server: every overlay is
 * rendered (base + components + patches, as kustomize does for these files), and its ports, probe
 * paths, LORASERVE_* variables and endpoint-picker flags are checked against the server's own
 * flag table, routes (the committed OpenAPI document) and metric names.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { parseServeArgs, serveUsage } from '../../src/cli/serve.js';
import { KeyRing } from '../../src/server/auth.js';
import { Metrics } from '../../src/server/metrics.js';
import { tempDir } from '../helpers/adapters.js';

const ROOT = join(import.meta.dirname, '..', '..');
const K8S = join(ROOT, 'deploy', 'kubernetes');
const OVERLAYS = ['cpu', 'cuda', 'plain-service'];

// Parsed YAML of any shape: the assertions below walk it by path.
type Doc = Record<string, any>;

function readYaml(path: string): Doc[] {
  return parseAllDocuments(readFileSync(path, 'utf8')).map((d) => {
    assert.deepEqual(d.errors, [], `${path}: ${d.errors.join('; ')}`);
    return d.toJS() as Doc;
  });
}

/** Strategic merge as far as these manifests use it: maps deep, lists of named items by name, other lists replaced. */
function merge(base: any, patch: any): any {
  if (Array.isArray(base) && Array.isArray(patch)) {
    if (!patch.every((p) => p && typeof p === 'object' && 'name' in p)) return patch;
    const out = base.map((b) => ({ ...b }));
    for (const p of patch) {
      const i = out.findIndex((b) => b.name === p.name);
      if (i >= 0) out[i] = merge(out[i], p);
      else out.push(p);
    }
    return out;
  }
  if (base && patch && typeof base === 'object' && typeof patch === 'object') {
    const out = { ...base };
    for (const [k, v] of Object.entries(patch)) out[k] = k in base ? merge(base[k], v) : v;
    return out;
  }
  return patch;
}

/** What `kubectl kustomize <dir>` renders from these files (resources, components, patches, images). */
function render(dir: string): Doc[] {
  const [k] = readYaml(join(dir, 'kustomization.yaml'));
  let docs: Doc[] = [];
  for (const r of k!.resources ?? []) {
    const path = join(dir, r);
    assert.ok(existsSync(path), `${dir}: resource ${r} does not exist`);
    docs.push(...(existsSync(join(path, 'kustomization.yaml')) ? render(path) : readYaml(path)));
  }
  for (const c of k!.components ?? []) {
    const [ck] = readYaml(join(dir, c, 'kustomization.yaml'));
    assert.equal(ck!.kind, 'Component');
    for (const r of ck!.resources ?? []) docs.push(...readYaml(join(dir, c, r)));
    for (const p of ck!.patches ?? []) docs = applyPatch(docs, readYaml(join(dir, c, p.path))[0]!);
  }
  for (const p of k!.patches ?? []) docs = applyPatch(docs, readYaml(join(dir, p.path))[0]!);
  for (const img of k!.images ?? []) {
    for (const d of docs)
      for (const c of d.spec?.template?.spec?.containers ?? [])
        if (c.image.split(':')[0] === img.name) c.image = `${img.name}:${img.newTag}`;
  }
  return docs;
}

function applyPatch(docs: Doc[], patch: Doc): Doc[] {
  const i = docs.findIndex((d) => d.kind === patch.kind && d.metadata.name === patch.metadata.name);
  assert.ok(i >= 0, `patch for ${patch.kind}/${patch.metadata.name} matches nothing`);
  return docs.map((d, j) => (j === i ? merge(d, patch) : d));
}

const find = (docs: Doc[], kind: string, name: string) => {
  const d = docs.find((x) => x.kind === kind && x.metadata.name === name);
  assert.ok(d, `${kind}/${name} is missing`);
  return d;
};

const SERVER_ENV = new Set([...serveUsage().matchAll(/\b(LORASERVE_[A-Z_]+)\)/g)].map((m) => m[1]!));
const ROUTES = Object.keys((JSON.parse(readFileSync(join(ROOT, 'openapi', 'openapi.json'), 'utf8')) as { paths: object }).paths);
const METRICS = (() => {
  // Gauges register when bound to their source; only their names are read here, never their values.
  const metrics = new Metrics();
  const idle = { capacity: 0, used: 0, pinned: 0, hostBytes: 0, queued: 0, running: [], waiting: [] };
  metrics.gaugesFrom({
    queueDepth: () => 0,
    running: () => 0,
    kvUsage: () => 0,
    occupancy: () => idle,
    tenantUsage: () => [],
    prefixCache: () => null,
  });
  return new Set((metrics.registry.getMetricsAsArray() as Array<{ name: string }>).map((m) => m.name));
})();

describe('deployment manifests agree with the server', () => {
  it('every YAML file under deploy/kubernetes parses', () => {
    const walk = (d: string): string[] =>
      readdirSync(d, { withFileTypes: true }).flatMap((e) =>
        e.isDirectory() ? walk(join(d, e.name)) : e.name.endsWith('.yaml') ? [join(d, e.name)] : [],
      );
    const files = walk(K8S);
    assert.ok(files.length >= 10);
    for (const f of files) for (const doc of readYaml(f)) assert.ok(doc.kind, `${f}: a document without kind`);
  });

  for (const overlay of OVERLAYS) {
    it(`overlays/${overlay}: ports, probes, LORASERVE_* variables, store volume and keys`, () => {
      const docs = render(join(K8S, 'overlays', overlay));
      const deployment = find(docs, 'Deployment', 'loraserve');
      const pod = deployment.spec.template.spec;
      const container = pod.containers.find((c: Doc) => c.name === 'loraserve');
      const env: Record<string, string> = Object.fromEntries(container.env.map((e: Doc) => [e.name, e.value]));
      for (const name of Object.keys(env)) assert.ok(SERVER_ENV.has(name), `${name} is not a variable loraserve serve reads`);
      // The server parses the variables exactly as the manifest sets them.
      const config = parseServeArgs([], env);
      const port = (name: string) => container.ports.find((p: Doc) => p.name === name)?.containerPort;
      assert.equal(port('http'), config.port);
      assert.equal(port('metrics'), config.metricsPort);
      assert.equal(config.host, '0.0.0.0');
      assert.equal(config.metricsHost, '0.0.0.0');

      for (const [probe, path] of [
        ['readinessProbe', '/ready'],
        ['livenessProbe', '/health'],
      ] as const) {
        assert.equal(container[probe].httpGet.path, path);
        assert.equal(container[probe].httpGet.port, 'http');
        assert.ok(ROUTES.includes(path), `${path} is not a server route`);
      }
      const preStop = container.lifecycle.preStop.sleep.seconds as number;
      assert.ok(
        pod.terminationGracePeriodSeconds > preStop + config.drainTimeoutMs / 1000,
        'the grace period must outlast preStop plus the drain',
      );

      // The shared store: a ReadWriteMany claim mounted where --adapters points.
      const mount = (path: string) => container.volumeMounts.find((m: Doc) => m.mountPath === path);
      const store = pod.volumes.find((v: Doc) => v.name === mount(config.adaptersDir).name);
      const pvc = find(docs, 'PersistentVolumeClaim', store.persistentVolumeClaim.claimName);
      assert.deepEqual(pvc.spec.accessModes, ['ReadWriteMany']);
      // The keys file: a Secret key mounted where --keys points, in the server's format.
      assert.ok(config.keysFile);
      const keys = pod.volumes.find((v: Doc) => v.name === mount(dirname(config.keysFile!)).name);
      const secret = find(docs, 'Secret', keys.secret.secretName);
      const keysFile = join(tempDir(), 'keys.json');
      writeFileSync(keysFile, secret.stringData[basename(config.keysFile)]);
      assert.ok(KeyRing.load(keysFile));

      const service = find(docs, 'Service', 'loraserve');
      assert.deepEqual(service.spec.selector, deployment.spec.template.metadata.labels);
      for (const p of service.spec.ports) assert.ok(port(p.targetPort), `Service port ${p.name} targets no container port`);

      if (overlay === 'plain-service') {
        assert.ok(!docs.some((d) => d.kind === 'InferencePool'));
        return;
      }
      const pool = find(docs, 'InferencePool', 'loraserve');
      assert.equal(pool.apiVersion, 'inference.networking.k8s.io/v1');
      assert.deepEqual(pool.spec.selector.matchLabels, deployment.spec.template.metadata.labels);
      assert.deepEqual(pool.spec.targetPorts, [{ number: config.port }]);
      const eppService = find(docs, 'Service', pool.spec.endpointPickerRef.name);
      assert.ok(eppService.spec.ports.some((p: Doc) => p.port === pool.spec.endpointPickerRef.port.number));
      const epp = find(docs, 'Deployment', pool.spec.endpointPickerRef.name).spec.template.spec.containers[0];
      const flags: Record<string, string> = Object.fromEntries(
        epp.args.map((a: string) => a.replace(/^--/, '').split('=') as [string, string]),
      );
      assert.equal(flags['pool-name'], pool.metadata.name);
      assert.equal(Number(flags['model-server-metrics-port']), config.metricsPort);
      assert.ok(ROUTES.includes(flags['model-server-metrics-path']!));
      for (const f of ['total-queued-requests-metric', 'kv-cache-usage-percentage-metric', 'lora-info-metric']) {
        assert.ok(METRICS.has(flags[f]!), `--${f}=${flags[f]} is not a metric loraserve exports`);
      }
      const route = find(docs, 'HTTPRoute', 'loraserve');
      assert.deepEqual(route.spec.rules[0].backendRefs[0], {
        group: 'inference.networking.k8s.io',
        kind: 'InferencePool',
        name: pool.metadata.name,
      });
      if (overlay === 'cuda') {
        assert.equal(config.provider, 'cuda');
        assert.equal(container.resources.limits['nvidia.com/gpu'], 1);
      } else assert.equal(config.provider, 'cpu');
    });
  }

  it("the HAProxy config health-checks /ready and hashes generation routes on the body's model", () => {
    const cfg = readFileSync(join(ROOT, 'deploy', 'haproxy', 'haproxy.cfg'), 'utf8');
    assert.match(cfg, /option httpchk GET \/ready\n/);
    assert.ok(ROUTES.includes('/ready'));
    const generation = /acl generation path (.+)\n/.exec(cfg)![1]!.split(' ');
    for (const p of generation) assert.ok(ROUTES.includes(p), `${p} is not a server route`);
    assert.match(cfg, /balance hash req\.body,json_query\('\$\.model'\)/);
  });
});
