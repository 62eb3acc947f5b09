import { readFileSync } from 'node:fs';
import { Ajv, type ValidateFunction } from 'ajv';

/** The project's own copy of OpenAI's schemas (see schemas/openai/README.md): nothing outside the repo. */
export const SCHEMA_FILE = new URL('../../schemas/openai/realtime-openapi-subset.json', import.meta.url);

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

/**
 * Compiled at import: a missing or broken schema file stops the fake (and every test using it) with
 * an error that names the file, instead of surfacing later as "OpenAI answered 400".
 */
function compileValidators() {
  let document: { components: Json };
  try {
    document = JSON.parse(readFileSync(SCHEMA_FILE, 'utf8')) as { components: Json };
  } catch (error) {
    throw new Error(`fake OpenAI: cannot load OpenAI's schema from ${SCHEMA_FILE.pathname}`, { cause: error });
  }
  const ajv = new Ajv({ strict: false, allErrors: true, validateFormats: false });
  ajv.addSchema({ $id: 'openai', components: closeObjects(document.components) });
  const schema = (name: string): ValidateFunction => ajv.compile({ $ref: `openai#/components/schemas/${name}` });
  return {
    clientSecret: schema('RealtimeCreateClientSecretRequest'),
    callCreate: schema('RealtimeCallCreateRequest'),
    sessionUpdate: schema('RealtimeClientEventSessionUpdate'),
    sessionCreated: schema('RealtimeServerEventSessionCreated'),
    sessionUpdated: schema('RealtimeServerEventSessionUpdated'),
    responseDone: schema('RealtimeServerEventResponseDone'),
  };
}

const validators = compileValidators();

function problems(validate: ValidateFunction, body: unknown): string[] {
  if (validate(body)) return [];
  return (validate.errors ?? []).map((error) => `${error.instancePath || '/'} ${error.message ?? ''}`);
}

/** Validates a body against OpenAI's RealtimeCreateClientSecretRequest (closed objects). */
export function validateClientSecretRequest(body: unknown): string[] {
  return problems(validators.clientSecret, body);
}

/** Validates the parts of a POST /realtime/calls (sdp, session) against RealtimeCallCreateRequest. */
export function validateCallCreateRequest(body: unknown): string[] {
  return problems(validators.callCreate, body);
}

/** A sideband event the service sends (only `session.update` is expected), against RealtimeClientEventSessionUpdate. */
export function validateSessionUpdate(event: unknown): string[] {
  return problems(validators.sessionUpdate, event);
}

/** What the fake sends on a sideband, each against its own event schema (other types: no schema here). */
export function validateServerEvent(event: { type: string }): string[] {
  switch (event.type) {
    case 'session.created':
      return problems(validators.sessionCreated, event);
    case 'session.updated':
      return problems(validators.sessionUpdated, event);
    case 'response.done':
      return problems(validators.responseDone, event);
    default:
      return [`no schema for server event ${event.type}`];
  }
}
