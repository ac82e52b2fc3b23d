/**
 * API keys. Without a keys file every caller is an admin, so only loopback callers are answered.
 * With one, each key is either an admin key (manage adapters, see everything) or a tenant key
 * scoped to adapter names and `prefix-*` patterns. A tenant never learns that adapters outside its
 * scope exist: they answer 404 exactly like missing ones. An entry may also set its tenant's
 * fair-share `weight` and limits (rate-limit.ts); keys of one tenant must agree on them.
 */
import { readFileSync } from 'node:fs';
import { ConfigError, UnauthorizedError } from '../errors.js';
import { DEFAULT_POLICY, type TenantPolicy } from './rate-limit.js';

export interface Caller {
  admin: boolean;
  /** Tenant name for logs and metrics. */
  tenant: string;
  /** May this caller see and use the adapter? */
  canUse(adapter: string): boolean;
}

export const ANONYMOUS_ADMIN: Caller = { admin: true, tenant: 'local', canUse: () => true };

/** A loopback address or host name (IPv4 127/8, IPv6 ::1, either as an IPv4-mapped address, or localhost). */
export function isLoopback(address: string | undefined): boolean {
  return address !== undefined && (address === 'localhost' || address === '::1' || /^(::ffff:)?127\./.test(address));
}

interface KeyEntry {
  key: string;
  admin?: boolean;
  tenant?: string;
  adapters?: string[];
  weight?: number;
  max_concurrent?: number;
  max_queued?: number;
  tokens_per_minute?: number;
  requests_per_minute?: number;
}

const LIMIT_FIELDS = {
  max_concurrent: { field: 'maxConcurrent', min: 1 },
  max_queued: { field: 'maxQueued', min: 0 },
  tokens_per_minute: { field: 'tokensPerMinute', min: 1 },
  requests_per_minute: { field: 'requestsPerMinute', min: 1 },
} as const;
const KNOWN_FIELDS = new Set(['key', 'admin', 'tenant', 'adapters', 'weight', ...Object.keys(LIMIT_FIELDS)]);

/** An entry's weight and limits; the first problem is one line naming the entry and the field. */
function parsePolicy(e: KeyEntry, i: number): TenantPolicy {
  const unknown = Object.keys(e).find((k) => !KNOWN_FIELDS.has(k));
  if (unknown !== undefined)
    throw new ConfigError(`keys file: entry ${i} has an unknown field "${unknown}" (known: ${[...KNOWN_FIELDS].join(', ')})`);
  const policy: TenantPolicy = { ...DEFAULT_POLICY };
  if (e.weight !== undefined) {
    if (typeof e.weight !== 'number' || !Number.isFinite(e.weight) || e.weight <= 0)
      throw new ConfigError(`keys file: entry ${i} "weight" must be a positive number, not ${JSON.stringify(e.weight)}`);
    policy.weight = e.weight;
  }
  for (const [name, { field, min }] of Object.entries(LIMIT_FIELDS)) {
    const v = e[name as keyof typeof LIMIT_FIELDS];
    if (v === undefined) continue;
    if (!Number.isInteger(v) || v < min)
      throw new ConfigError(`keys file: entry ${i} "${name}" must be an integer of at least ${min}, not ${JSON.stringify(v)}`);
    policy[field] = v;
  }
  return policy;
}

function scopeMatcher(patterns: string[]): (name: string) => boolean {
  return (name) => patterns.some((p) => (p.endsWith('*') ? name.startsWith(p.slice(0, -1)) : name === p));
}

export class KeyRing {
  private readonly keys = new Map<string, Caller>();
  /** Each tenant's weight and limits. */
  readonly policies = new Map<string, TenantPolicy>();

  constructor(entries: KeyEntry[]) {
    for (const [i, e] of entries.entries()) {
      if (typeof e.key !== 'string' || e.key.length < 8) {
        throw new ConfigError(`keys file: entry ${i} needs a "key" of at least 8 characters`);
      }
      if (!e.admin && !Array.isArray(e.adapters)) {
        throw new ConfigError(`keys file: tenant entry ${i} needs "adapters": a list of names or "prefix-*" patterns`);
      }
      const tenant = e.tenant ?? (e.admin ? 'admin' : `tenant-${i}`);
      const policy = parsePolicy(e, i);
      const other = this.policies.get(tenant);
      if (other && JSON.stringify(other) !== JSON.stringify(policy))
        throw new ConfigError(`keys file: entry ${i} gives tenant "${tenant}" a weight or limits other than an earlier key of it`);
      this.policies.set(tenant, policy);
      this.keys.set(
        e.key,
        e.admin ? { admin: true, tenant, canUse: () => true } : { admin: false, tenant, canUse: scopeMatcher(e.adapters!) },
      );
    }
  }

  static load(path: string): KeyRing {
    let parsed: { keys?: KeyEntry[] };
    try {
      parsed = JSON.parse(readFileSync(path, 'utf8'));
    } catch (cause) {
      throw new ConfigError(`keys file ${path} is not readable JSON`, { cause });
    }
    if (!Array.isArray(parsed.keys)) throw new ConfigError(`keys file ${path} needs {"keys": [...]}`);
    return new KeyRing(parsed.keys);
  }

  /** The caller behind an `Authorization: Bearer <key>` header (or `x-api-key`). */
  authenticate(authorization: string | undefined, apiKey: string | undefined): Caller {
    const bearer = authorization?.match(/^Bearer\s+(.+)$/i)?.[1]?.trim() ?? apiKey;
    if (!bearer) throw new UnauthorizedError('missing API key: send "Authorization: Bearer <key>"');
    const caller = this.keys.get(bearer);
    if (!caller) throw new UnauthorizedError('invalid API key');
    return caller;
  }
}
