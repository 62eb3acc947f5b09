import { describe, expect, it } from 'vitest';
import { validateClientSecretRequest } from '../support/openai-schema.js';

// The fake OpenAI refuses what the real one refuses: prove the check bites before trusting it.
describe("OpenAI's RealtimeCreateClientSecretRequest, as the fake enforces it", () => {
  const good = { expires_after: { anchor: 'created_at', seconds: 600 }, session: { type: 'realtime', model: 'gpt-realtime' } };

  it('accepts a minimal GA body', () => {
    expect(validateClientSecretRequest(good)).toEqual([]);
  });

  it.each([
    ['beta field temperature', { ...good, session: { ...good.session, temperature: 0.8 } }],
    ['beta field modalities', { ...good, session: { ...good.session, modalities: ['audio', 'text'] } }],
    ['max_response_output_tokens', { ...good, session: { ...good.session, max_response_output_tokens: 100 } }],
    ['TTL over 7200', { ...good, expires_after: { anchor: 'created_at', seconds: 7201 } }],
    ['speed over 1.5', { ...good, session: { ...good.session, audio: { output: { speed: 2 } } } }],
    ['beta audio format string', { ...good, session: { ...good.session, audio: { input: { format: 'pcm16' } } } }],
  ])('refuses %s', (_name, body) => {
    expect(validateClientSecretRequest(body).length).toBeGreaterThan(0);
  });
});
