import { expect } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';

/** The least environment that boots. */
export const BASE_ENV = { OPENAI_API_KEY: 'sk-config-test-secret-value', ALLOWED_ORIGINS: 'https://www.espn.com' };

/** The one-line message of the ConfigError an environment must raise. */
export function problemsOf(env: Record<string, string>): string {
  try {
    loadConfig(env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).message;
  }
  throw new Error('expected a ConfigError');
}
