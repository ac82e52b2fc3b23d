/**
 * Who may read /metrics. Its labels name adapters, so on a shared server a tenant could learn
 * the others' adapter names from it. Two protections: `--metrics-key` (a bearer key the scraper
 * sends; admin API keys work too) and `--metrics-port` (its own listener, off the API port, e.g.
 * reachable only inside the cluster). Without either it is open, as scrapers on loopback expect.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { timingSafeEqual } from 'node:crypto';
import { ForbiddenError, UnauthorizedError } from '../errors.js';
import type { Serving } from './serving.js';

const sameKey = (a: string, b: string) => a.length === b.length && timingSafeEqual(Buffer.from(a), Buffer.from(b));

/** Throws 401/403 unless the request may read the metrics. */
export function checkMetricsAccess(serving: Serving, authorization: string | undefined): void {
  const key = serving.config.metricsKey;
  if (!key) return;
  const bearer = authorization?.match(/^Bearer\s+(.+)$/i)?.[1]?.trim();
  if (!bearer) throw new UnauthorizedError('/metrics needs "Authorization: Bearer <metrics key>"');
  if (sameKey(bearer, key)) return;
  let admin = false;
  try {
    admin = serving.keys?.authenticate(authorization, undefined).admin ?? false;
  } catch {
    // not an API key either
  }
  if (!admin) throw new ForbiddenError('this key may not read /metrics');
}

/** The Prometheus text exposition (gauges read their sources as it is collected). */
export async function renderMetrics(serving: Serving): Promise<{ contentType: string; body: string }> {
  return { contentType: serving.metrics.registry.contentType, body: await serving.metrics.registry.metrics() };
}

/** A listener that serves only GET /metrics (with the same key check). */
export async function listenMetrics(serving: Serving, host: string, port: number): Promise<{ url: string; close(): Promise<void> }> {
  const server = createServer((req, res) => {
    void (async () => {
      if (req.method !== 'GET' || req.url?.split('?')[0] !== '/metrics') {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('only GET /metrics is served here\n');
        return;
      }
      try {
        checkMetricsAccess(serving, req.headers.authorization);
        const { contentType, body } = await renderMetrics(serving);
        res.writeHead(200, { 'content-type': contentType }).end(body);
      } catch (err) {
        const status = (err as { status?: number }).status ?? 500;
        res.writeHead(status, { 'content-type': 'text/plain' }).end(`${status === 500 ? 'internal error' : (err as Error).message}\n`);
      }
    })();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const address = server.address() as AddressInfo;
  return {
    url: `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}/metrics`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
