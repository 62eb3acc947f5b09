import { createHash, timingSafeEqual } from 'node:crypto';

const sha256 = (text: string) => createHash('sha256').update(text, 'utf8').digest();

/**
 * An operator's token check (ADMIN_TOKEN, METRICS_TOKEN) on an Authorization header:
 * `Bearer <token>`, and with `basic`, HTTP Basic with the token as the password (any user name) so
 * a browser can ask for it. Digests of equal length are compared in constant time: neither the
 * token's length nor a matching prefix shows in the timing.
 */
export function operatorTokenCheck(token: string, options: { basic: boolean }): (authorization: string | undefined) => boolean {
  const expected = sha256(token);
  return (authorization) => {
    const offered = offeredToken(authorization, options.basic);
    return offered !== undefined && timingSafeEqual(sha256(offered), expected);
  };
}

function offeredToken(authorization: string | undefined, basic: boolean): string | undefined {
  const match = /^(\S+) +(\S+)\s*$/.exec(authorization ?? '');
  if (!match) return undefined;
  const [, scheme = '', credentials = ''] = match;
  if (scheme.toLowerCase() === 'bearer') return credentials;
  if (!basic || scheme.toLowerCase() !== 'basic') return undefined;
  // RFC 7617: the user name ends at the first colon; the password is the rest.
  const decoded = Buffer.from(credentials, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return colon === -1 ? undefined : decoded.slice(colon + 1);
}
