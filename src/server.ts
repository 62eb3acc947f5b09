// The process's entry (node dist/server.js, npm run dev). It imports nothing but the Node check, so
// an older Node stops here with one line instead of failing inside undici; the service loads after.
import './node-guard.js';

await import('./main.js');
