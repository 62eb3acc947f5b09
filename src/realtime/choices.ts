import { z } from 'zod';
import type { Config } from '../config.js';

/** What a caller may choose for its session, as HTTP takes it (the token route's body, the calls
 * route's query and `options` part), and the choice with every default filled in. */

export const DIFFICULTIES = ['easy', 'savage', 'expert'] as const;
export type Difficulty = (typeof DIFFICULTIES)[number];

// A short label such as "nba" or "premier league". The README, the 422 message and the OpenAPI
// pattern (this regex) all state this one rule.
export const SPORT_LABEL = /^[\p{L}\p{N}][\p{L}\p{N} .&'/-]*$/u;
export const SPORT_RULE = "1 to 40 characters: letters, digits, spaces and . & ' / -, starting with a letter or digit";

/** The choices a caller may make (the token route's body, the calls route's query and `options` part). */
/** What the choices' schema reads from the config: the allow-lists, the defaults, the size cap. */
export type ChoicesConfig = Pick<Config, 'allowedModels' | 'allowedVoices' | 'realtimeModel' | 'realtimeVoice' | 'maxInstructionsChars'>;

export function sessionChoiceFields(config: ChoicesConfig) {
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
      .min(1, { error: `must be ${SPORT_RULE}` })
      .max(40, { error: `must be ${SPORT_RULE}` })
      .regex(SPORT_LABEL, { error: `must be ${SPORT_RULE}` })
      .optional()
      .describe(`Short label of the sport being watched, e.g. "nba", added to the persona: ${SPORT_RULE}.`),
  });
}

/** The body of POST /v1/realtime/token; the allow-lists and limits come from the config. */
export function tokenRequestSchema(config: ChoicesConfig) {
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

export function resolveChoice(config: Pick<Config, 'realtimeModel' | 'realtimeVoice'>, body: TokenRequest | null | undefined): SessionChoice {
  return {
    model: body?.model ?? config.realtimeModel,
    voice: body?.voice ?? config.realtimeVoice,
    difficulty: body?.difficulty ?? 'easy',
    sport: body?.sport,
    instructions: body?.instructions?.trim() || undefined,
  };
}

/** What tells poolable choices (no free-text instructions) apart: `model|voice|difficulty|sport`. */
export function choiceKey(choice: SessionChoice): string {
  return `${choice.model}|${choice.voice}|${choice.difficulty}|${choice.sport ?? ''}`;
}

