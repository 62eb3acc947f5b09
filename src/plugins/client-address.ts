import type { IncomingMessage } from 'node:http';
import { isIP, type Socket } from 'node:net';
import { normalizeIP } from '@fastify/rate-limit';
import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import type { Config } from '../config.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The client's address, parsed and canonical (see clientAddress); for logs. */
    clientIp: string;
    /**
     * Who every limit, quota, budget and call slot counts against: `ip:<address>` (an IPv6 client
     * by its RATE_LIMIT_IPV6_PREFIX network) or, once authenticated, `user:<sub>`.
     */
    clientKey: string;
    /** The authenticated caller's `sub`, when caller authentication is on and passed. */
    userId: string | undefined;
  }
}

const IPV4_WITH_PORT = /^(\d{1,3}(?:\.\d{1,3}){3}):\d{1,5}$/;
const BRACKETED_IPV6 = /^\[([^\]]+)\](?::\d{1,5})?$/;

// IPv6 forms that carry an IPv4 client in their last 32 bits, in the canonical text normalizeIP
// gives: IPv4-compatible (::a.b.c.d, deprecated but still sent) and NAT64's well-known prefix
// (64:ff9b::/96). Keyed by their /56 instead, every IPv4 client behind them would share one quota.
const IPV4_COMPATIBLE = /^::([0-9a-f]{1,4}):([0-9a-f]{1,4})$/;
const NAT64 = /^64:ff9b::(?:([0-9a-f]{1,4}):)?([0-9a-f]{1,4})$/;

function embeddedIPv4(canonical: string): string | undefined {
  const match = IPV4_COMPATIBLE.exec(canonical) ?? NAT64.exec(canonical);
  if (!match) return undefined;
  const high = parseInt(match[1] ?? '0', 16);
  const low = parseInt(match[2] as string, 16);
  return `${high >> 8}.${high & 255}.${low >> 8}.${low & 255}`;
}

/**
 * One X-Forwarded-For entry (or a socket address) as a canonical IP address, or undefined when it
 * is not one: ports and brackets removed, a zone id dropped, `::ffff:a.b.c.d`, `::a.b.c.d` and
 * `64:ff9b::a.b.c.d` mapped to IPv4.
 */
export function parseAddress(entry: string): string | undefined {
  let text = entry.trim();
  const v4 = IPV4_WITH_PORT.exec(text);
  if (v4?.[1]) text = v4[1];
  const v6 = BRACKETED_IPV6.exec(text);
  if (v6?.[1]) text = v6[1];
  const zone = text.indexOf('%');
  if (zone > 0 && text.includes(':')) text = text.slice(0, zone);
  const family = isIP(text);
  if (family === 0) return undefined;
  // A dotted quad is already canonical (isIP refuses leading zeros).
  if (family === 4) return text;
  // 128: no masking, only normalization (lower case, compressed, IPv4-mapped to IPv4).
  const canonical = normalizeIP(text, 128);
  return embeddedIPv4(canonical) ?? canonical;
}

/** The rate-limit key of an address: IPv4 as is, IPv6 by its /prefix network (one home gets a whole prefix). */
export function addressKey(address: string, ipv6Prefix: number): string {
  return isIP(address) === 6 ? `ip:${normalizeIP(address, ipv6Prefix)}/${ipv6Prefix}` : `ip:${address}`;
}

// A kept-alive connection's peer does not change: parsed once per socket.
const peers = new WeakMap<Socket, string>();
function peerAddress(socket: Socket): string {
  let peer = peers.get(socket);
  if (peer === undefined) {
    peer = parseAddress(socket.remoteAddress ?? '') ?? 'unknown';
    // remoteAddress is undefined once the socket is gone: do not remember that.
    if (socket.remoteAddress !== undefined) peers.set(socket, peer);
  }
  return peer;
}

/**
 * The client address behind `trustedHops` proxies that each append to X-Forwarded-For: the entry
 * that many from the right (entries to its left were written by the client and prove nothing).
 * An entry that is not an IP address is no client: the socket peer is used and `onMisconfigured`
 * told why.
 */
export function clientAddress(
  req: IncomingMessage,
  trustedHops: number,
  onMisconfigured: (why: string) => void = () => undefined,
): string {
  const peer = peerAddress(req.socket);
  if (trustedHops === 0) return peer;
  const header = req.headers['x-forwarded-for'];
  const hops = (Array.isArray(header) ? header.join(',') : (header ?? ''))
    .split(',')
    .map((entry) => entry.trim())
    .filter((entry) => entry !== '');
  if (hops.length === 0) {
    onMisconfigured('TRUST_PROXY is set but a request came without X-Forwarded-For');
    return peer;
  }
  const entry = hops[Math.max(0, hops.length - trustedHops)] as string;
  const address = parseAddress(entry);
  if (address === undefined) {
    onMisconfigured('the trusted X-Forwarded-For entry is not an IP address (check TRUST_PROXY)');
    return peer;
  }
  return address;
}

/**
 * Who is asking, by address: the parsed client address on every request (for logs, and the key of
 * every limit until caller authentication names a user). Nothing else parses X-Forwarded-For.
 */
export const clientAddressing = fp(
  async function clientAddressing(app: FastifyInstance, opts: { config: Pick<Config, 'trustProxy' | 'rateLimitIpv6Prefix'>; log: FastifyBaseLogger }) {
    const { trustProxy, rateLimitIpv6Prefix } = opts.config;
    let warned = false;
    const misconfigured = (why: string) => {
      if (warned) return;
      warned = true;
      opts.log.warn({ trust_proxy: trustProxy }, `client address: ${why}; using the socket peer (logged once)`);
    };
    app.decorateRequest('clientIp', '');
    app.decorateRequest('clientKey', '');
    app.decorateRequest('userId', undefined);
    app.addHook('onRequest', (request, _reply, done) => {
      request.clientIp = clientAddress(request.raw, trustProxy, misconfigured);
      request.clientKey = addressKey(request.clientIp, rateLimitIpv6Prefix);
      done();
    });
  },
  { name: 'client-address' },
);
