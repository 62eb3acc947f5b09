import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';

/** What the JWKS endpoint answers: the keys (200), a status with no keys, or the keys padded to a size. */
export type JwksAnswer = { kind: 'keys' } | { kind: 'status'; status: number } | { kind: 'huge'; bytes: number };

/** A JWKS endpoint on loopback, as an identity provider publishes one; it can fail or bloat. */
export class JwksServer {
  keys: JWK[] = [];
  answer: JwksAnswer = { kind: 'keys' };
  fetches = 0;
  /** Bytes of the last answer that the socket accepted before the client stopped reading. */
  lastBytesSent = 0;
  private constructor(
    private readonly server: Server,
    readonly url: string,
  ) {}

  static async start(): Promise<JwksServer> {
    const server = createServer();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const jwks = new JwksServer(server, `http://127.0.0.1:${(server.address() as { port: number }).port}/.well-known/jwks.json`);
    server.on('request', (_req, res) => {
      jwks.fetches += 1;
      const answer = jwks.answer;
      if (answer.kind === 'status') {
        res.writeHead(answer.status, { 'content-type': 'application/json' });
        res.end('{"error":"unavailable"}');
        return;
      }
      const keys = JSON.stringify({ keys: jwks.keys });
      if (answer.kind === 'keys') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(keys);
        return;
      }
      // A valid JWKS with a huge extra member, streamed (no Content-Length) 64 KiB at a time.
      jwks.lastBytesSent = 0;
      res.writeHead(200, { 'content-type': 'application/json' });
      const head = `${keys.slice(0, -1)},"pad":"`;
      const chunk = 'x'.repeat(64 * 1024);
      let left = answer.bytes;
      const write = (text: string) => {
        jwks.lastBytesSent += text.length;
        return res.write(text);
      };
      write(head);
      const pump = () => {
        while (left > 0) {
          left -= chunk.length;
          if (!write(chunk)) return void res.once('drain', pump);
        }
        res.end('"}');
      };
      res.on('close', () => (left = 0));
      pump();
    });
    return jwks;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    this.server.close();
    await once(this.server, 'close');
  }
}

export interface SigningKey {
  kid: string;
  privateKey: CryptoKey;
  jwk: JWK;
}

export async function signingKey(kid: string, alg = 'RS256'): Promise<SigningKey> {
  const { publicKey, privateKey } = await generateKeyPair(alg);
  return { kid, privateKey, jwk: { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' } };
}

export interface Claims {
  sub?: string;
  iss?: string;
  aud?: string;
  /** Seconds since the epoch; omitted: none. */
  iat?: number;
  exp?: number;
}

/** A JWT signed with `key` (a JWKS key, or an HS256 secret) carrying exactly the given claims. */
export function signedToken(key: SigningKey | Uint8Array, claims: Claims): Promise<string> {
  const jwt = new SignJWT({ ...claims });
  if (key instanceof Uint8Array) return jwt.setProtectedHeader({ alg: 'HS256' }).sign(key);
  return jwt.setProtectedHeader({ alg: key.jwk.alg as string, kid: key.kid }).sign(key.privateKey);
}
