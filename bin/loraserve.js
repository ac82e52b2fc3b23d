#!/usr/bin/env node
// Runs the TypeScript CLI through tsx's loader (a runtime dependency), so `npx loraserve` works without a build step.
import { register } from 'tsx/esm/api';

register();
await import('../src/cli/main.ts');
