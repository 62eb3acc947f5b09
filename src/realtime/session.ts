import type { Config } from '../config.js';
import type { Difficulty, SessionChoice } from './choices.js';

/** What OpenAI is sent for a choice: the persona and the session object (upstream bodies). */

const TONES: Record<Difficulty, string> = {
  easy:
    'Tone: encouraging and warm. Celebrate good plays, explain what happened in plain words, ' +
    'and keep any criticism gentle and constructive.',
  savage:
    'Tone: brutally honest trash talk. Roast bad decisions and blown plays with sharp, funny ' +
    'one-liners, never hateful, never about anyone’s identity, and always about the game.',
  expert:
    'Tone: analytical, like a former pro in the booth. Break down schemes, matchups, tactics ' +
    'and numbers, and explain why a play worked or failed.',
};

/** The persona Parker is given: the base text, the tone of the difficulty, then the client's additions. */
export function buildInstructions(config: Pick<Config, 'defaultInstructions'>, choice: SessionChoice): string {
  const parts = [config.defaultInstructions, TONES[choice.difficulty]];
  if (choice.sport) parts.push(`The user is watching: ${choice.sport}.`);
  if (choice.instructions) parts.push(`Additional instructions from the user:\n${choice.instructions}`);
  return parts.join('\n\n');
}

/** What a session object reads from the config. */
export type SessionConfig = Pick<Config, 'defaultSpeed' | 'defaultMaxTokens'>;

/**
 * OpenAI's session object for a choice: the one builder behind client secrets, relayed calls and the
 * warm pool (validated in tests against OpenAI's schema, as both requests that carry it).
 */
export function buildSession(config: SessionConfig, choice: SessionChoice, instructions: string) {
  const pcm = { type: 'audio/pcm', rate: 24000 } as const;
  return {
    type: 'realtime',
    model: choice.model,
    instructions,
    output_modalities: ['audio'],
    audio: {
      input: {
        format: pcm,
        transcription: { model: 'whisper-1' },
        turn_detection: {
          type: 'server_vad',
          threshold: 0.5,
          prefix_padding_ms: 300,
          silence_duration_ms: 500,
        },
      },
      output: { format: pcm, voice: choice.voice, speed: config.defaultSpeed },
    },
    tools: [],
    tool_choice: 'auto',
    max_output_tokens: config.defaultMaxTokens,
  };
}

export type RealtimeSession = ReturnType<typeof buildSession>;

/** The body of POST /realtime/client_secrets (GA shape). */
export function buildClientSecretRequest(config: SessionConfig & Pick<Config, 'tokenTtlSeconds'>, choice: SessionChoice, instructions: string) {
  return {
    expires_after: { anchor: 'created_at', seconds: config.tokenTtlSeconds },
    session: buildSession(config, choice, instructions),
  };
}

/** Where the browser goes with the secret: derived from the upstream base, so a test fake works too. */
export function connectionUrls(config: Pick<Config, 'openaiBaseUrl'>, model: string) {
  const base = config.openaiBaseUrl;
  const ws = new URL(`${base}/realtime`);
  ws.protocol = ws.protocol === 'http:' ? 'ws:' : 'wss:';
  ws.searchParams.set('model', model);
  return { webRtcUrl: `${base}/realtime/calls`, websocketUrl: ws.toString() };
}
