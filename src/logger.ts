import pino, { type DestinationStream, type Logger, type LoggerOptions } from 'pino';
import type { Config } from './config.js';

/**
 * Belt and braces: nothing should ever hand these to the logger, but if some future line does,
 * pino censors them before they are written. Exact paths only: wildcard paths cost a few % of a
 * mint's CPU in @pinojs/redact.
 */
export const REDACTED_PATHS = [
  'authorization',
  'headers.authorization',
  'req.headers.authorization',
  'req.headers.cookie',
  'apiKey',
  'openaiApiKey',
  'client_secret',
  'value',
  'instructions',
  'session.instructions',
  'body.instructions',
  'body.client_secret',
];

export function createLogger(
  config: Pick<Config, 'logLevel' | 'logFormat'>,
  destination?: DestinationStream,
): Logger {
  const options: LoggerOptions = {
    level: config.logLevel,
    base: { service: 'realtime-token-service' },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
    redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
  };
  if (destination) return pino(options, destination);
  if (config.logFormat === 'pretty') {
    return pino({ ...options, transport: { target: 'pino-pretty', options: { colorize: true } } });
  }
  // Asynchronous stdout: lines are batched instead of one write(2) each; pino flushes at exit.
  return pino(options, pino.destination({ dest: 1, sync: false }));
}
