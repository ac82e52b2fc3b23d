import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import SwaggerParser from '@apidevtools/swagger-parser';
import { generateOpenApi } from '../../src/testing/index.js';

type ApiDocument = Awaited<ReturnType<typeof SwaggerParser.validate>>;

describe('OpenAPI document', () => {
  it('is a valid OpenAPI 3.1 document by a maintained validator (its schemas are JSON Schema 2020-12)', async () => {
    const doc = (await generateOpenApi()) as ApiDocument & { openapi: string };
    assert.equal(doc.openapi, '3.1.0');
    // validate() resolves $refs in place: hand it a copy.
    await SwaggerParser.validate(structuredClone(doc));
  });

  it('the validator refuses the same schemas declared as OpenAPI 3.0 (what the check above guards against)', async () => {
    const doc = (await generateOpenApi()) as ApiDocument;
    await assert.rejects(SwaggerParser.validate(structuredClone({ ...doc, openapi: '3.0.3' }) as ApiDocument), /exclusiveMinimum/);
  });
});
