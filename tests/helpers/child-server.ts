import { join } from 'node:path';

export { spawnServer, writeTinyModel, type ChildServer } from '../../src/testing/index.js';

/** The test-only fault hooks, for `spawnServer(args, { preload: [FAULT_HOOKS] })`. */
export const FAULT_HOOKS = join(import.meta.dirname, 'fault-hooks.ts');
