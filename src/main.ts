// The process, once src/server.ts has found a Node it can run on: config, build, listen, graceful shutdown.
import closeWithGrace from 'close-with-grace';
import { buildApp } from './app.js';
import { ConfigError, loadConfig } from './config.js';

let config;
try {
  config = loadConfig(process.env);
} catch (error) {
  if (!(error instanceof ConfigError)) throw error;
  // One line naming every bad variable; values are never printed.
  process.stderr.write(`${error.message} (every variable: .env.example; to try it without a key: npm run demo)\n`);
  process.exit(1);
}

const app = await buildApp(config);

// SIGTERM/SIGINT: stop accepting, let in-flight mints finish (bounded), close the upstream pool, exit 0.
closeWithGrace({ delay: config.shutdownTimeoutMs, logger: app.log }, async ({ signal, err }) => {
  if (err) app.log.error({ err }, 'shutting down after an error');
  else app.log.info({ signal }, 'shutting down');
  await app.close();
});

try {
  await app.listen({ port: config.port, host: config.host });
  // METRICS_PORT: /metrics alone, on the same host (e.g. Railway's private network).
  await app.metricsServer?.listen({ port: config.metricsPort, host: config.host });
} catch (error) {
  app.log.fatal({ err: error }, 'could not listen');
  process.exit(1);
}
