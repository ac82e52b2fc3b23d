/**
 * The fuzzer's cases: each one a mutated HTTP request built from valid material (chat bodies, a
 * real adapter's config and safetensors, multipart and tar uploads). Case `i` of seed `s` is the
 * same request on every run.
 */
import { gzipSync } from 'node:zlib';
import tar from 'tar-stream';
import { CONFIG_FILE, WEIGHTS_FILE } from '../../lora/index.js';
import { Dice, mutateBytes, mutateJson, serialize, WEIRD_STRINGS } from './mutators.js';

export interface FuzzRequest {
  kind: string;
  what: string;
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: Uint8Array;
  /** A successful upload or registration under this name is removed again after the run. */
  creates?: string;
}

export interface Material {
  baseId: string;
  /** Adapters in the store before the run; no case may delete or replace them. */
  existing: string[];
  config: string;
  weights: Uint8Array;
  /** Folder name under --lora-root that holds a valid adapter. */
  loraRootAdapter: string;
}

const json = (value: unknown) => new TextEncoder().encode(serialize(value));
const text = (s: string) => new TextEncoder().encode(s);

function chatBody(d: Dice, m: Material): { path: string; body: Record<string, unknown> } {
  const model = d.pick([m.baseId, ...m.existing]);
  const sampling = d.pick<Record<string, unknown>>([
    {},
    { temperature: 0 },
    { temperature: 0.7, top_p: 0.9, top_k: 5, seed: 3 },
    { stop: ['\n', 'x'], frequency_penalty: 0.5, presence_penalty: -0.5 },
    { stream: true, stream_options: { include_usage: true } },
    { max_completion_tokens: 3, ignore_eos: true },
  ]);
  if (d.chance(0.3)) {
    return {
      path: '/v1/completions',
      body: { model, prompt: d.pick(['Once upon', '안녕하세요', ['a list prompt']]), max_tokens: 4, echo: d.chance(0.5), ...sampling },
    };
  }
  const messages = [
    { role: 'system', content: 'be brief' },
    { role: 'user', content: d.pick(['hello', '환불 정책은?', [{ type: 'text', text: 'parts' }]]) },
  ];
  return { path: '/v1/chat/completions', body: { model, messages: messages.slice(d.int(2)), max_tokens: 4, ...sampling } };
}

interface Part {
  name: string;
  filename?: string;
  data: Uint8Array;
}

function multipartBody(parts: Part[], boundary: string): Uint8Array {
  const chunks: Buffer[] = [];
  for (const p of parts) {
    const disposition = `form-data; name="${p.name}"${p.filename === undefined ? '' : `; filename="${p.filename}"`}`;
    chunks.push(
      Buffer.from(
        `--${boundary}\r\nContent-Disposition: ${disposition}\r\n${p.filename === undefined ? '' : 'Content-Type: application/octet-stream\r\n'}\r\n`,
      ),
      Buffer.from(p.data),
      Buffer.from('\r\n'),
    );
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return Buffer.concat(chunks);
}

function upload(
  kind: string,
  what: string,
  name: string,
  files: Array<{ filename: string; data: Uint8Array }>,
  d: Dice,
  mangle = false,
): FuzzRequest {
  const boundary = `fuzz${d.int(1e9)}`;
  let body = multipartBody(
    [{ name: 'name', data: text(name) }, ...files.map((f) => ({ name: 'file', filename: f.filename, data: f.data }))],
    boundary,
  );
  if (mangle) {
    const m = mutateBytes(body, d);
    body = m.bytes;
    what = `${what}; ${m.what}`;
  }
  return {
    kind,
    what,
    method: 'POST',
    path: '/v1/adapters',
    headers: { 'content-type': `multipart/form-data; boundary=${boundary}` },
    body,
    creates: name,
  };
}

function safetensorsParts(weights: Uint8Array): { header: Record<string, unknown>; data: Uint8Array } {
  const length = Number(new DataView(weights.buffer, weights.byteOffset).getBigUint64(0, true));
  return { header: JSON.parse(Buffer.from(weights.subarray(8, 8 + length)).toString('utf8')), data: weights.subarray(8 + length) };
}

function encodeSafetensors(headerText: Uint8Array, data: Uint8Array, length = BigInt(headerText.length)): Uint8Array {
  const out = new Uint8Array(8 + headerText.length + data.length);
  new DataView(out.buffer).setBigUint64(0, length, true);
  out.set(headerText, 8);
  out.set(data, 8 + headerText.length);
  return out;
}

async function tarball(
  entries: Array<{ name: string; type?: 'file' | 'symlink' | 'link' | 'directory'; linkname?: string; data?: Uint8Array }>,
): Promise<Uint8Array> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on('data', (c: unknown) => chunks.push(c as Buffer));
  const done = new Promise<void>((resolve) => pack.on('end', () => resolve()));
  for (const e of entries) {
    if (e.type && e.type !== 'file') pack.entry({ name: e.name, type: e.type, linkname: e.linkname });
    else pack.entry({ name: e.name }, Buffer.from(e.data ?? new Uint8Array()));
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

const PATH_TRICKS = ['../', '../../', '/', './', 'a/../../', '..\\', 'C:\\', '%2e%2e/', '\u0000', 'dir/'];
const fuzzName = (d: Dice, i: number) =>
  d.chance(0.7) ? `fz-${i}` : d.pick([...WEIRD_STRINGS, `FZ-${i}`, `fz/${i}`, `-fz${i}`, `.fz${i}`, `fz-${i}`.padEnd(70, 'x')]);

/** A path segment: UTF-8 bytes percent-encoded (lone surrogates become U+FFFD); `/` raw if asked. */
const percentEncode = (s: string, rawSlash: boolean) =>
  [...Buffer.from(s, 'utf8')]
    .map((b) =>
      /[A-Za-z0-9._~-]/.test(String.fromCharCode(b)) || (rawSlash && b === 0x2f)
        ? String.fromCharCode(b)
        : `%${b.toString(16).padStart(2, '0').toUpperCase()}`,
    )
    .join('');

type Builder = (d: Dice, m: Material, i: number) => FuzzRequest | Promise<FuzzRequest>;

const BUILDERS: Record<string, { weight: number; build: Builder }> = {
  'chat-json': {
    weight: 25,
    build: (d, m) => {
      const { path, body } = chatBody(d, m);
      let value: unknown = body;
      const whats: string[] = [];
      for (let k = 1 + d.int(3); k > 0; k--) {
        const r = mutateJson(value, d);
        value = r.value;
        whats.push(r.what);
      }
      return {
        kind: 'chat-json',
        what: `${path}: ${whats.join(', ')}`,
        method: 'POST',
        path,
        headers: { 'content-type': 'application/json' },
        body: json(value),
      };
    },
  },
  'chat-bytes': {
    weight: 10,
    build: (d, m) => {
      const { path, body } = chatBody(d, m);
      const r = mutateBytes(json(body), d);
      return {
        kind: 'chat-bytes',
        what: `${path}: ${r.what}`,
        method: 'POST',
        path,
        headers: {
          'content-type': d.pick([
            'application/json',
            'application/json; charset=utf-8',
            'text/plain',
            'application/x-www-form-urlencoded',
          ]),
        },
        body: r.bytes,
      };
    },
  },
  'adapter-config': {
    weight: 15,
    build: (d, m, i) => {
      let config: Uint8Array;
      let what: string;
      if (d.chance(0.75)) {
        const r = mutateJson(JSON.parse(m.config), d);
        config = json(r.value);
        what = r.what;
      } else {
        const r = mutateBytes(text(m.config), d);
        config = r.bytes;
        what = r.what;
      }
      return upload(
        'adapter-config',
        `adapter_config.json: ${what}`,
        `fz-${i}`,
        [
          { filename: CONFIG_FILE, data: config },
          { filename: WEIGHTS_FILE, data: m.weights },
        ],
        d,
      );
    },
  },
  'safetensors-header': {
    weight: 15,
    build: (d, m, i) => {
      const { header, data } = safetensorsParts(m.weights);
      let weights: Uint8Array;
      let what: string;
      const how = d.int(3);
      if (how === 0) {
        const r = mutateJson(header, d);
        weights = encodeSafetensors(json(r.value), data);
        what = `header ${r.what}`;
      } else if (how === 1) {
        const headerText = json(header);
        const r = mutateBytes(encodeSafetensors(headerText, data), d, [0, 8 + headerText.length]);
        weights = r.bytes;
        what = `header bytes: ${r.what}`;
      } else {
        const length = d.pick([0n, 1n, 7n, 2n ** 63n, 2n ** 64n - 1n, BigInt(m.weights.length), 100_000_001n]);
        weights = encodeSafetensors(json(header), data, length);
        what = `length prefix ${length}`;
      }
      return upload(
        'safetensors-header',
        what,
        `fz-${i}`,
        [
          { filename: CONFIG_FILE, data: text(m.config) },
          { filename: WEIGHTS_FILE, data: weights },
        ],
        d,
      );
    },
  },
  multipart: {
    weight: 10,
    build: (d, m, i) => {
      const files = [
        { filename: CONFIG_FILE, data: text(m.config) },
        { filename: WEIGHTS_FILE, data: m.weights },
      ];
      switch (d.int(5)) {
        case 0:
          return upload('multipart', 'whole body mutated', `fz-${i}`, files, d, true);
        case 1: {
          const trick = d.pick(PATH_TRICKS);
          return upload(
            'multipart',
            `file names prefixed ${JSON.stringify(trick)}`,
            `fz-${i}`,
            files.map((f) => ({ ...f, filename: trick + f.filename })),
            d,
          );
        }
        case 2: {
          const name = fuzzName(d, i);
          return upload('multipart', `name ${JSON.stringify(name.slice(0, 40))}`, name, files, d);
        }
        case 3:
          return upload(
            'multipart',
            'a part missing or doubled',
            `fz-${i}`,
            d.chance(0.5) ? files.slice(d.int(2), 1 + d.int(2)) : [...files, files[d.int(2)]!],
            d,
          );
        default: {
          const { payload, boundary } = {
            payload: multipartBody(
              [{ name: 'name', data: text(`fz-${i}`) }, ...files.map((f) => ({ name: 'file', filename: f.filename, data: f.data }))],
              'real',
            ),
            boundary: d.pick(['other', '', 'real"; x=1', 'r'.repeat(200)]),
          };
          return {
            kind: 'multipart',
            what: `content-type boundary ${JSON.stringify(boundary.slice(0, 20))}`,
            method: 'POST',
            path: '/v1/adapters',
            headers: { 'content-type': `multipart/form-data; boundary=${boundary}` },
            body: payload,
            creates: `fz-${i}`,
          };
        }
      }
    },
  },
  tar: {
    weight: 10,
    build: async (d, m, i) => {
      const files = [
        { name: CONFIG_FILE, data: text(m.config) },
        { name: WEIGHTS_FILE, data: m.weights },
      ];
      let entries: Parameters<typeof tarball>[0];
      let what: string;
      switch (d.int(5)) {
        case 0: {
          const trick = d.pick(PATH_TRICKS);
          entries = files.map((f) => ({ ...f, name: trick + f.name }));
          what = `entries prefixed ${JSON.stringify(trick)}`;
          break;
        }
        case 1: {
          const type = d.pick(['symlink', 'link'] as const);
          entries = [files[0]!, { name: WEIGHTS_FILE, type, linkname: d.pick(['/etc/passwd', '../../secret', CONFIG_FILE]) }];
          what = `${type} entry`;
          break;
        }
        case 2:
          entries = [...files, files[d.int(2)]!, { name: 'README.md', data: text('extra') }, { name: 'sub', type: 'directory' }];
          what = 'duplicate and extra entries';
          break;
        case 3:
          entries = [...files, { name: 'padding.bin', data: new Uint8Array(3_000_000) }];
          what = 'an entry that unpacks past the upload limit';
          break;
        default:
          entries = files;
          what = 'valid entries';
      }
      let archive = await tarball(entries);
      const gz = d.chance(0.5);
      if (gz) archive = gzipSync(archive);
      if (d.chance(0.5)) {
        const r = mutateBytes(archive, d);
        archive = r.bytes;
        what += `; ${r.what}`;
      }
      return upload(
        'tar',
        `${gz ? 'tar.gz' : 'tar'}: ${what}`,
        `fz-${i}`,
        [{ filename: gz ? 'adapter.tar.gz' : 'adapter.tar', data: archive }],
        d,
      );
    },
  },
  'load-by-path': {
    weight: 5,
    build: (d, m, i) => {
      const name = fuzzName(d, i);
      const path = d.pick([
        m.loraRootAdapter,
        `${d.pick(PATH_TRICKS)}${m.loraRootAdapter}`,
        d.pick(WEIRD_STRINGS),
        '/',
        '.',
        '..',
        `${m.loraRootAdapter}/${CONFIG_FILE}`,
      ]);
      const body: unknown = d.chance(0.7)
        ? { lora_name: name, lora_path: path }
        : mutateJson({ lora_name: name, lora_path: path }, d).value;
      return {
        kind: 'load-by-path',
        what: `lora_path ${JSON.stringify(path.slice(0, 40))}`,
        method: 'POST',
        path: '/v1/load_lora_adapter',
        headers: { 'content-type': 'application/json' },
        body: json(body),
        // The name the body really carries: a mutation may have replaced it with another valid one.
        creates: typeof (body as { lora_name?: unknown } | null)?.lora_name === 'string' ? (body as { lora_name: string }).lora_name : name,
      };
    },
  },
  misc: {
    weight: 10,
    build: (d, m, i): FuzzRequest => {
      const name = percentEncode(fuzzName(d, i), d.chance(0.5));
      const raw = d.pick([
        name,
        `${percentEncode(d.pick(PATH_TRICKS), true)}${name}`,
        '..',
        '%2e%2e',
        `${m.existing[0]}%00`,
        `${m.existing[0]}/..`,
      ]);
      const choice = d.int(6);
      if (choice === 0)
        return { kind: 'misc', what: `DELETE /v1/adapters/${raw}`, method: 'DELETE', path: `/v1/adapters/${raw}`, headers: {} };
      if (choice === 1) return { kind: 'misc', what: `GET /v1/adapters/${raw}`, method: 'GET', path: `/v1/adapters/${raw}`, headers: {} };
      if (choice === 2)
        return {
          kind: 'misc',
          what: `POST /v1/adapters/${raw}/${d.pick(['load', 'unload'])}`,
          method: 'POST',
          path: `/v1/adapters/${raw}/${d.pick(['load', 'unload'])}`,
          headers: {},
        };
      if (choice === 3) return { kind: 'misc', what: `GET /v1/models/${raw}`, method: 'GET', path: `/v1/models/${raw}`, headers: {} };
      const { path, body } = chatBody(d, m);
      const header = d.pick(['authorization', 'x-api-key', 'x-request-id', 'content-type', 'accept']);
      const value = d.pick([
        'Bearer ',
        'Bearer \u00ff\u00fe',
        'x'.repeat(8000),
        'application/json; charset=latin1',
        'multipart/form-data',
        '*/*',
        'Basic Zm9vOmJhcg==',
      ]);
      return {
        kind: 'misc',
        what: `${path} with ${header}: ${JSON.stringify(value.slice(0, 30))}`,
        method: d.pick(['POST', 'PUT', 'PATCH']),
        path,
        headers: { 'content-type': 'application/json', [header]: value },
        body: json(body),
      };
    },
  },
};

/** Case `i` of a run seeded with `seed`. */
export async function buildCase(seed: number, i: number, m: Material): Promise<FuzzRequest> {
  const d = new Dice((seed * 1_000_003 + i * 7919) >>> 0);
  const kinds = Object.entries(BUILDERS);
  let roll = d.int(kinds.reduce((n, [, b]) => n + b.weight, 0));
  for (const [, b] of kinds) {
    if ((roll -= b.weight) < 0) return b.build(d, m, i);
  }
  throw new Error('unreachable');
}
