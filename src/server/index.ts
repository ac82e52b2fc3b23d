export { buildApp, OPENAPI_INFO } from './app.js';
export { Serving } from './serving.js';
export { KeyRing, ANONYMOUS_ADMIN, isLoopback, type Caller } from './auth.js';
export { DEFAULTS, type ServerConfig } from './config.js';
export type { App } from './types.js';
export { drain } from './drain.js';
export { listenMetrics } from './metrics-endpoint.js';
