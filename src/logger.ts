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

let stampedAt = Number.NaN;
let stamp = '';
/**
 * pino's isoTime, worked out once per millisecond rather than once per line (a Date and an ISO
 * string each time: a few % of a mint's CPU).
 */
export function isoTime(): string {
  const now = Date.now();
  if (now !== stampedAt) {
    stampedAt = now;
    stamp = `,"time":"${new Date(now).toISOString()}"`;
  }
  return stamp;
}

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
