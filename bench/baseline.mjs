// The ceiling for this stack: a bare Fastify route forwarding to the same fake through undici, with
// no origin check, no rate limit, no validation, no logging. Plain JavaScript run by plain node, so
// its memory and CPU compare with `node dist/server.js`. The upstream body comes from bench/run.ts
// (BASELINE_BODY): the service's own default session, so both pay the same upstream cost.
import Fastify from 'fastify';
import { Pool } from 'undici';

const upstream = new URL(process.env.OPENAI_BASE_URL);
const pool = new Pool(upstream.origin, { connections: 128, pipelining: 1 });
const body = process.env.BASELINE_BODY;
const authorization = `Bearer ${process.env.OPENAI_API_KEY}`;

const app = Fastify();
app.post('/v1/realtime/token', async () => {
  const response = await pool.request({
    method: 'POST',
    path: `${upstream.pathname}/realtime/client_secrets`,
    headers: { authorization, 'content-type': 'application/json' },
    body,
  });
  const answer = await response.body.json();
  return { client_secret: answer.value, expires_at: answer.expires_at, session_id: answer.session.id };
});
const address = await app.listen({ port: 0, host: '127.0.0.1' });
process.stdout.write(`Server listening at ${address}\n`);
process.on('SIGTERM', () => void app.close().then(() => pool.close()).then(() => process.exit(0)));
