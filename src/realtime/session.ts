import { z } from 'zod';
import type { Config } from '../config.js';

export const DIFFICULTIES = ['easy', 'savage', 'expert'] as const;
export type Difficulty = (typeof DIFFICULTIES)[number];

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

// A short label such as "nba" or "premier league": letters, digits, spaces and a few joiners.
const SPORT_LABEL = /^[\p{L}\p{N}][\p{L}\p{N} .&'/-]*$/u;

/** The choices a caller may make (the token route's body, the calls route's query and `options` part). */
export function sessionChoiceFields(config: Config) {
  const models = config.allowedModels as [string, ...string[]];
  const voices = config.allowedVoices as [string, ...string[]];
  return z.strictObject({
    model: z
      .enum(models)
      .optional()
      .describe(`Realtime model. Default: ${config.realtimeModel}.`),
    voice: z
      .enum(voices)
      .optional()
      .describe(`Voice of the answers. Default: ${config.realtimeVoice}.`),
    instructions: z
      .string()
      .max(config.maxInstructionsChars)
      .optional()
      .describe('Extra instructions, added to the Parker persona.'),
    difficulty: z
      .enum(DIFFICULTIES)
      .optional()
      .describe('Parker’s tone: easy (encouraging), savage (brutally honest), expert (analytical). Default: easy.'),
    sport: z
      .string()
      .trim()
      .min(1)
      .max(40)
      .regex(SPORT_LABEL, { error: 'must be a short label of letters, digits and spaces' })
      .optional()
      .describe('Short label of the sport being watched, e.g. "nba"; added to the persona.'),
  });
}

/** The body of POST /v1/realtime/token; the allow-lists and limits come from the config. */
export function tokenRequestSchema(config: Config) {
  return sessionChoiceFields(config)
    .nullish()
    .describe('Every field is optional; an empty object or no body at all means all defaults.')
    .meta({ examples: [{ model: 'gpt-realtime', voice: 'verse', difficulty: 'savage', sport: 'nba' }] });
}

export type TokenRequest = NonNullable<z.infer<ReturnType<typeof tokenRequestSchema>>>;

/** A request with every default filled in. */
export interface SessionChoice {
  model: string;
  voice: string;
  difficulty: Difficulty;
  sport: string | undefined;
  instructions: string | undefined;
}

export function resolveChoice(config: Config, body: TokenRequest | null | undefined): SessionChoice {
  return {
    model: body?.model ?? config.realtimeModel,
    voice: body?.voice ?? config.realtimeVoice,
    difficulty: body?.difficulty ?? 'easy',
    sport: body?.sport,
    instructions: body?.instructions?.trim() || undefined,
  };
}

/** Whether the choice is the default session, the only one a warm pool can serve. */
export function isDefaultChoice(config: Config, choice: SessionChoice): boolean {
  return (
    choice.model === config.realtimeModel &&
    choice.voice === config.realtimeVoice &&
    choice.difficulty === 'easy' &&
    choice.sport === undefined &&
    choice.instructions === undefined
  );
}

/** The persona Parker is given: the base text, the tone of the difficulty, then the client's additions. */
export function buildInstructions(config: Config, choice: SessionChoice): string {
  const parts = [config.defaultInstructions, TONES[choice.difficulty]];
  if (choice.sport) parts.push(`The user is watching: ${choice.sport}.`);
  if (choice.instructions) parts.push(`Additional instructions from the user:\n${choice.instructions}`);
  return parts.join('\n\n');
}

/**
 * OpenAI's session object for a choice: the one builder behind client secrets, relayed calls and the
 * warm pool (validated in tests against OpenAI's schema, as both requests that carry it).
 */
export function buildSession(config: Config, choice: SessionChoice, instructions: string) {
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
export function buildClientSecretRequest(config: Config, choice: SessionChoice, instructions: string) {
  return {
    expires_after: { anchor: 'created_at', seconds: config.tokenTtlSeconds },
    session: buildSession(config, choice, instructions),
  };
}

/** Where the browser goes with the secret: derived from the upstream base, so a test fake works too. */
export function connectionUrls(config: Config, model: string) {
  const base = config.openaiBaseUrl;
  const ws = new URL(`${base}/realtime`);
  ws.protocol = ws.protocol === 'http:' ? 'ws:' : 'wss:';
  ws.searchParams.set('model', model);
  return { webRtcUrl: `${base}/realtime/calls`, websocketUrl: ws.toString() };
}
