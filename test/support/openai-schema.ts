import { readFileSync } from 'node:fs';
import { Ajv, type ValidateFunction } from 'ajv';

const SCHEMA_FILE = new URL('../../../shared/openai/realtime-openapi-subset.json', import.meta.url);

type Json = Record<string, unknown>;

/** The real API refuses unknown fields: close every object schema that does not say otherwise. */
function closeObjects(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(closeObjects);
  if (node === null || typeof node !== 'object') return node;
  const copy: Json = {};
  for (const [key, value] of Object.entries(node as Json)) {
    // OpenAPI 3.0's nullable means nothing in this 3.1 document, and Ajv refuses it without a type.
    if (key === 'nullable') continue;
    copy[key] = key === 'properties' ? Object.fromEntries(Object.entries(value as Json).map(([k, v]) => [k, closeObjects(v)])) : closeObjects(value);
  }
  if (copy.properties !== undefined && copy.additionalProperties === undefined) copy.additionalProperties = false;
  return copy;
}

let validator: ValidateFunction | undefined;

/** Validates a body against OpenAI's RealtimeCreateClientSecretRequest (closed objects). */
export function validateClientSecretRequest(body: unknown): string[] {
  if (!validator) {
    const document = JSON.parse(readFileSync(SCHEMA_FILE, 'utf8')) as { components: Json };
    const ajv = new Ajv({ strict: false, allErrors: true, validateFormats: false });
    validator = ajv.compile({
      components: closeObjects(document.components),
      $ref: '#/components/schemas/RealtimeCreateClientSecretRequest',
    });
  }
  if (validator(body)) return [];
  return (validator.errors ?? []).map((error) => `${error.instancePath || '/'} ${error.message ?? ''}`);
}
