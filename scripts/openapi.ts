/**
 * Writes openapi/openapi.json from the route schemas (`npm run openapi`). The spec is never
 * edited by hand; a test fails when the committed file and the routes drift apart.
 */
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { generateOpenApi } from '../src/testing/index.js';

const out = fileURLToPath(new URL('../openapi/openapi.json', import.meta.url));
writeFileSync(out, `${JSON.stringify(await generateOpenApi(), null, 2)}\n`);
process.stdout.write(`wrote ${out}\n`);
