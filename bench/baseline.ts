// The ceiling for this stack: a bare Fastify route forwarding to the same fake through undici,
// with no origin check, no rate limit, no validation, no logging.
import Fastify from 'fastify';
import { Pool } from 'undici';
import { loadConfig } from '../src/config.js';
import { buildClientSecretRequest, buildInstructions, resolveChoice } from '../src/realtime/session.js';

const upstream = new URL(process.env.OPENAI_BASE_URL ?? 'http://127.0.0.1:9999/v1');
const pool = new Pool(upstream.origin, { connections: 128, pipelining: 1 });
// The same upstream request as the service's default mint, so both pay the same upstream cost.
const config = loadConfig({ OPENAI_API_KEY: 'unused', ALLOWED_ORIGINS: 'https://www.espn.com' });
const choice = resolveChoice(config, {});
const body = JSON.stringify(buildClientSecretRequest(config, choice, buildInstructions(config, choice)));
const authorization = `Bearer ${process.env.OPENAI_API_KEY ?? ''}`;

const app = Fastify();
app.post('/v1/realtime/token', async () => {
  const response = await pool.request({
    method: 'POST',
    path: `${upstream.pathname}/realtime/client_secrets`,
    headers: { authorization, 'content-type': 'application/json' },
    body,
  });
  const answer = (await response.body.json()) as { value: string; expires_at: number; session: { id: string } };
  return { client_secret: answer.value, expires_at: answer.expires_at, session_id: answer.session.id };
});
const address = await app.listen({ port: Number(process.env.PORT ?? 0), host: '127.0.0.1' });
process.stdout.write(`Server listening at ${address}\n`);
process.on('SIGTERM', () => void app.close().then(() => pool.close()).then(() => process.exit(0)));
