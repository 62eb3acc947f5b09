import { pino } from 'pino';
import { loadConfig } from '../../src/config.js';
import { resolveChoice } from '../../src/realtime/choices.js';
import { buildInstructions, buildSession } from '../../src/realtime/session.js';
import { Sidebands, type LockedSession, type SidebandEvent, type SidebandSettings } from '../../src/realtime/sideband.js';
import { LogCapture } from './app.js';
import { SDP_OFFER } from './calls.js';
import { FAKE_API_KEY, type FakeOpenAI } from './fake-openai.js';

/** The session the service sends for a call with default choices, and what its sideband locks. */
export function defaultCallSession(baseUrl: string) {
  const config = loadConfig({ OPENAI_API_KEY: FAKE_API_KEY, OPENAI_BASE_URL: baseUrl, ALLOWED_ORIGINS: 'https://www.espn.com' });
  const choice = resolveChoice(config, {});
  const session = buildSession(config, choice, buildInstructions(config, choice));
  const locked: LockedSession = { instructions: session.instructions, max_output_tokens: session.max_output_tokens };
  return { session, locked, model: choice.model };
}

/** Creates a call at the fake the way the service does (multipart, server key); returns its id. */
export async function createFakeCall(fake: Pick<FakeOpenAI, 'baseUrl'>, session: object): Promise<string> {
  const form = new FormData();
  form.set('sdp', new Blob([SDP_OFFER], { type: 'application/sdp' }));
  form.set('session', new Blob([JSON.stringify(session)], { type: 'application/json' }));
  const response = await fetch(`${fake.baseUrl}/realtime/calls`, { method: 'POST', headers: { authorization: `Bearer ${FAKE_API_KEY}` }, body: form });
  if (response.status !== 201) throw new Error(`fake refused the call: ${response.status} ${await response.text()}`);
  return String(response.headers.get('location')).split('/').pop() as string;
}

/** A Sidebands hub on the fake, with its log lines and metric events kept for assertions. */
export function sidebandHub(fake: FakeOpenAI, overrides: Partial<SidebandSettings> = {}) {
  const logs = new LogCapture();
  const events: SidebandEvent[] = [];
  let corrections = 0;
  const hub = new Sidebands({
    baseUrl: fake.baseUrl,
    apiKey: FAKE_API_KEY,
    lockSession: true,
    openTimeoutMs: 5_000,
    log: pino({ level: 'debug' }, logs),
    onEvent: (event) => events.push(event),
    onCorrection: () => (corrections += 1),
    ...overrides,
  });
  return { hub, logs, events, corrections: () => corrections };
}
