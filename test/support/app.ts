import { Writable } from 'node:stream';
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify';
import { afterEach, beforeEach } from 'vitest';
import { buildApp, type AppDeps } from '../../src/app.js';
import { loadConfig, type Config } from '../../src/config.js';
import { createLogger } from '../../src/logger.js';
import { FakeOpenAI, FAKE_API_KEY } from './fake-openai.js';

export const SITE_ORIGIN = 'https://www.espn.com';
export const EXTENSION_ORIGIN = 'chrome-extension://abcdefghijklmnopabcdefghijklmnop';

/** Every log line an app wrote, raw and parsed, for assertions about what was (not) logged. */
export class LogCapture extends Writable {
  raw = '';

  override _write(chunk: Buffer | string, _encoding: string, callback: () => void): void {
    this.raw += chunk.toString();
    callback();
  }

  get lines(): Record<string, unknown>[] {
    return this.raw
      .split('\n')
      .filter((line) => line.trim() !== '')
      .map((line) => JSON.parse(line) as Record<string, unknown>);
  }

  find(msg: string): Record<string, unknown>[] {
    return this.lines.filter((line) => line.msg === msg);
  }
}

export type Env = Record<string, string | undefined>;

export function testEnv(baseUrl: string, overrides: Env = {}): Env {
  return {
    OPENAI_API_KEY: FAKE_API_KEY,
    OPENAI_BASE_URL: baseUrl,
    ALLOWED_ORIGINS: JSON.stringify([SITE_ORIGIN, EXTENSION_ORIGIN]),
    LOG_LEVEL: 'debug',
    OPENAI_TIMEOUT_MS: '2000',
    ...overrides,
  };
}

export interface TestApp {
  app: FastifyInstance;
  config: Config;
  logs: LogCapture;
  /** POST /v1/realtime/token from the allowed site origin, JSON body. */
  mint: (body?: unknown, headers?: Record<string, string>) => Promise<LightMyRequestResponse>;
}

export async function buildTestApp(fake: FakeOpenAI, overrides: Env = {}, deps: AppDeps = {}): Promise<TestApp> {
  const config = loadConfig(testEnv(fake.baseUrl, overrides));
  const logs = new LogCapture();
  const app = await buildApp(config, { logger: createLogger(config, logs), ...deps });
  await app.ready();
  const mint = (body: unknown = {}, headers: Record<string, string> = {}) => {
    const options: InjectOptions = {
      method: 'POST',
      url: '/v1/realtime/token',
      headers: { origin: SITE_ORIGIN, 'content-type': 'application/json', ...headers },
      payload: body === undefined ? undefined : JSON.stringify(body),
    };
    return app.inject(options);
  };
  return { app, config, logs, mint };
}

export interface FakeOpenAIHarness {
  /** This test's fake OpenAI. */
  readonly fake: FakeOpenAI;
  /** The apps built by this test, oldest first. */
  readonly apps: readonly TestApp[];
  /** Builds an app pointed at this test's fake; it is closed after the test. */
  app(env?: Env, deps?: AppDeps): Promise<TestApp>;
}

/** Per test: a fresh fake OpenAI, and every app built through it closed afterwards (then the fake). */
export function useFakeOpenAI(): FakeOpenAIHarness {
  let fake: FakeOpenAI | undefined;
  const apps: TestApp[] = [];
  beforeEach(async () => {
    fake = await FakeOpenAI.start();
  });
  afterEach(async () => {
    for (const t of apps.splice(0)) await t.app.close();
    await fake?.close();
    fake = undefined;
  });
  const harness: FakeOpenAIHarness = {
    get fake() {
      if (!fake) throw new Error('useFakeOpenAI: the fake exists only inside a test');
      return fake;
    },
    apps,
    async app(env = {}, deps = {}) {
      const t = await buildTestApp(harness.fake, env, deps);
      apps.push(t);
      return t;
    },
  };
  return harness;
}

export interface Envelope {
  error: { code: number; message: string; request_id: string; retry_after?: number; details?: Record<string, unknown> };
}

/** Asserts the one error envelope, with the request id echoed in the header; returns it. */
export function expectEnvelope(response: LightMyRequestResponse | { statusCode: number; headers: Record<string, unknown>; body: string }, status: number): Envelope {
  if (response.statusCode !== status) {
    throw new Error(`expected ${status}, got ${response.statusCode}: ${response.body}`);
  }
  const body = JSON.parse(response.body) as Envelope;
  const keys = Object.keys(body);
  if (keys.length !== 1 || keys[0] !== 'error') throw new Error(`not the envelope: ${response.body}`);
  if (body.error.code !== status) throw new Error(`envelope code ${body.error.code} != ${status}`);
  if (typeof body.error.message !== 'string' || body.error.message === '') throw new Error('no message');
  if (body.error.request_id !== response.headers['x-request-id']) throw new Error('request id differs from header');
  if (/\bat .+\(.+:\d+:\d+\)/.test(response.body)) throw new Error('stack trace in body');
  return body;
}

/** A clock tests move by hand (breaker cooldowns, pool expiry, health cache). */
export class ManualClock {
  constructor(private current = Date.now()) {}
  now = (): number => this.current;
  advance(ms: number): void {
    this.current += ms;
  }
}
