// A loopback stand-in for OpenAI, for trying the service without a key and for the benchmark.
// Usage: PORT=9999 LATENCY_MS=0 npx tsx scripts/fake-openai.ts   (key: see FAKE_API_KEY)
// LATENCY_JITTER_MS adds a uniform random [0, jitter) to every answer's latency.
import { FakeOpenAI, FAKE_API_KEY } from '../test/support/fake-openai.js';

const fake = await FakeOpenAI.start({ latencyMs: Number(process.env.LATENCY_MS ?? 0), latencyJitterMs: Number(process.env.LATENCY_JITTER_MS ?? 0), port: Number(process.env.PORT ?? 0), keepRequests: false });
process.stdout.write(`${JSON.stringify({ baseUrl: fake.baseUrl, apiKey: FAKE_API_KEY })}\n`);
const stop = () => void fake.close().then(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
