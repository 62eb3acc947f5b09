import pino, { type DestinationStream, type Logger, type LoggerOptions } from 'pino';
import type { Config } from './config.js';
import { secretScrubber } from './redact.js';

/**
 * Belt and braces: nothing should ever hand these to the logger, but if some future line does,
 * pino censors them before they are written. Exact paths only: wildcard paths cost a few % of a
 * mint's CPU in @pinojs/redact.
 */
const REDACTED_PATHS = [
  'authorization',
  'headers.authorization',
  'req.headers.authorization',
  'req.headers.cookie',
  'apiKey',
  'openaiApiKey',
  'authJwtSecret',
  'adminToken',
  'metricsToken',
  'client_secret',
  'value',
  'instructions',
  'session.instructions',
  'body.instructions',
  'body.client_secret',
];

let minuteStart = Number.NaN;
let minutePrefix = '';
let stampedAt = Number.NaN;
let stamp = '';

/**
 * pino's `,"time":"<ISO 8601>"` for a time in ms, without a Date per line: the date and minute are
 * formatted once a minute, the rest once per millisecond (a Date and toISOString() on every line
 * were a few % of a mint).
 */
export function isoStamp(now: number): string {
  if (now === stampedAt) return stamp;
  const intoMinute = now - minuteStart;
  if (!(intoMinute >= 0 && intoMinute < 60_000)) {
    minuteStart = now - (now % 60_000);
    // "2026-12-01T19:40:" (17 characters).
    minutePrefix = `,"time":"${new Date(minuteStart).toISOString().slice(0, 17)}`;
  }
  const ms = now - minuteStart;
  const seconds = Math.floor(ms / 1_000);
  const milli = ms % 1_000;
  stampedAt = now;
  stamp = `${minutePrefix}${seconds < 10 ? '0' : ''}${seconds}.${milli < 10 ? '00' : milli < 100 ? '0' : ''}${milli}Z"`;
  return stamp;
}

/** pino's `timestamp` option: isoStamp of now. */
export const isoTime = (): string => isoStamp(Date.now());

export function createLogger(
  config: Pick<Config, 'logLevel'> & { openaiApiKey?: string; authJwtSecret?: string; adminToken?: string; metricsToken?: string },
  destination?: DestinationStream,
): Logger {
  const scrub = secretScrubber(config.openaiApiKey, config.authJwtSecret, config.adminToken, config.metricsToken);
  const options: LoggerOptions = {
    level: config.logLevel,
    base: { service: 'realtime-token-service' },
    timestamp: isoTime,
    formatters: { level: (label) => ({ level: label }) },
    redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
    // Last line of defence: every line, whatever put the text in it, leaves without the key or
    // anything secret-shaped.
    hooks: { streamWrite: scrub },
  };
  // No destination: a terminal (LOG_FORMAT=pretty); the server passes its bounded stdout otherwise.
  if (!destination) return pino({ ...options, transport: { target: 'pino-pretty', options: { colorize: true } } });
  return pino(options, destination);
}
