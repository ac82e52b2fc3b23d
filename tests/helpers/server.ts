/** The in-process test server lives in src/testing, where the OpenAPI generator uses it too. */
export { startTestServer, type TestServer } from '../../src/testing/index.js';
