# syntax=docker/dockerfile:1
# Realtime token service. Build: docker build -t realtime-token-service .
# Run:   docker run -p 8000:8000 -e OPENAI_API_KEY=... -e ALLOWED_ORIGINS=... realtime-token-service

# Node 24 LTS, the same major as .nvmrc, package.json engines and CI.
ARG NODE_IMAGE=node:24-bookworm-slim

# --- build: dev dependencies and the TypeScript compiler, then dist/ ---
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
RUN npm run build

# --- runtime: production dependencies and dist/ only, as a non-root user ---
FROM ${NODE_IMAGE} AS runtime
# HOST "::" takes IPv6 and IPv4 (Railway's private network, e.g. /metrics scrapes, is IPv6-only).
ENV NODE_ENV=production \
    HOST=:: \
    PORT=8000
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
USER node
EXPOSE 8000
# Liveness, so /healthz: a restart cures a stuck process, not a revoked key (that is /readyz's
# job, which Railway's deploy check uses). No curl in the slim image: node's own fetch probes it.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 8000) + '/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# node itself is PID 1 (no npm, no shell), so SIGTERM reaches the server's graceful shutdown.
CMD ["node", "dist/server.js"]
