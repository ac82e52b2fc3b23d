import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, type TestServer } from '../helpers/server.js';

// buildApp's own rule, whatever address an embedder listens on: without keys every caller is an admin.
describe('no API keys file: loopback callers only', () => {
  let open: TestServer;
  let keyed: TestServer;
  before(async () => {
    open = await startTestServer();
    keyed = await startTestServer({}, { keys: { keys: [{ key: 'sk-admin-key', admin: true }] } });
  });
  after(async () => {
    await open.close();
    await keyed.close();
  });

  it('answers 127.0.0.0/8, ::1 and IPv4-mapped loopback; refuses any other address with 403', async () => {
    for (const remoteAddress of ['127.0.0.1', '127.3.2.1', '::1', '::ffff:127.0.0.1'])
      assert.equal((await open.app.inject({ method: 'GET', url: '/v1/models', remoteAddress })).statusCode, 200, remoteAddress);
    for (const remoteAddress of ['10.0.0.7', '203.0.113.5', '::ffff:192.168.1.2', 'fe80::1']) {
      const r = await open.app.inject({ method: 'GET', url: '/v1/models', remoteAddress });
      assert.equal(r.statusCode, 403, remoteAddress);
      assert.equal(r.json().error.code, 'forbidden');
      assert.match(r.json().error.message, /no API keys file/);
    }
  });

  it('with keys, a remote caller is judged by its key alone', async () => {
    const headers = { authorization: 'Bearer sk-admin-key' };
    assert.equal((await keyed.app.inject({ method: 'GET', url: '/v1/models', remoteAddress: '203.0.113.5', headers })).statusCode, 200);
    assert.equal((await keyed.app.inject({ method: 'GET', url: '/v1/models', remoteAddress: '203.0.113.5' })).statusCode, 401);
  });
});
