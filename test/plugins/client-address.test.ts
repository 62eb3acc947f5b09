import { isIP } from 'node:net';
import type { IncomingMessage } from 'node:http';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { addressKey, clientAddress, parseAddress } from '../../src/plugins/client-address.js';
import { expectEnvelope, SITE_ORIGIN, useFakeOpenAI, type TestApp } from '../support/app.js';
import { turn } from '../support/wait.js';

const openai = useFakeOpenAI();

describe('parseAddress: an X-Forwarded-For entry as a canonical address, or no client at all', () => {
  it.each([
    ['1.2.3.4', '1.2.3.4'],
    [' 1.2.3.4 ', '1.2.3.4'],
    ['1.2.3.4:5555', '1.2.3.4'],
    ['::ffff:1.2.3.4', '1.2.3.4'],
    ['[::ffff:1.2.3.4]:443', '1.2.3.4'],
    ['::FFFF:1.2.3.4', '1.2.3.4'],
    ['2001:DB8::1', '2001:db8::1'],
    ['2001:0db8:0000:0000:0000:0000:0000:0001', '2001:db8::1'],
    ['[2001:db8::1]', '2001:db8::1'],
    ['[2001:db8::1]:8080', '2001:db8::1'],
    ['fe80::1%eth0', 'fe80::1'],
    ['[1.2.3.4]:80', '1.2.3.4'],
    // Issue 16: IPv6 forms that carry an IPv4 client are that client.
    ['::203.0.113.7', '203.0.113.7'],
    ['::cb00:7107', '203.0.113.7'],
    ['64:ff9b::203.0.113.7', '203.0.113.7'],
    ['[64:FF9B::cb00:7107]:443', '203.0.113.7'],
    ['64:ff9b::0.0.113.7', '0.0.113.7'],
    // Not in those forms: the loopback, the unspecified address, NAT64's local-use /48, a wider ::/64.
    ['::1', '::1'],
    ['::', '::'],
    ['64:ff9b:1::203.0.113.7', '64:ff9b:1::cb00:7107'],
    ['::1:0:cb00:7107', '::1:0:cb00:7107'],
  ])('%s -> %s', (entry, expected) => {
    expect(parseAddress(entry)).toBe(expected);
  });

  it.each(['unknown', '', 'evil.example', '1.2.3', '1.2.3.4.5', '999.1.1.1', '1.2.3.4:', '2001:db8::1:80:', '_hidden', '"1.2.3.4"', 'x'.repeat(7000)])(
    '%j is no client',
    (entry) => {
      expect(parseAddress(entry)).toBeUndefined();
    },
  );
});

describe('addressKey', () => {
  it('keys IPv4 by the address and IPv6 by its /56 network', () => {
    expect(addressKey('203.0.113.7', 56)).toBe('ip:203.0.113.7');
    expect(addressKey('2001:db8:aa:bb00::1', 56)).toBe('ip:2001:db8:aa:bb00::/56');
    // same /56 (the 57th bit onwards differs), same key
    expect(addressKey('2001:db8:aa:bbff:ffff::9', 56)).toBe('ip:2001:db8:aa:bb00::/56');
    // the 56th bit differs: another network
    expect(addressKey('2001:db8:aa:ba00::1', 56)).toBe('ip:2001:db8:aa:ba00::/56');
    expect(addressKey('2001:db8::1', 128)).toBe('ip:2001:db8::1/128');
  });
});

describe('clientAddress', () => {
  const req = (xff: string | string[] | undefined, peer = '10.9.9.9') =>
    ({ headers: xff === undefined ? {} : { 'x-forwarded-for': xff }, socket: { remoteAddress: peer } }) as unknown as IncomingMessage;

  it('counts trusted hops from the right', () => {
    expect(clientAddress(req('6.6.6.6, 1.1.1.1, 2.2.2.2'), 2)).toBe('1.1.1.1');
    expect(clientAddress(req('6.6.6.6, 1.1.1.1, 2.2.2.2'), 1)).toBe('2.2.2.2');
    expect(clientAddress(req('1.1.1.1'), 3)).toBe('1.1.1.1');
    expect(clientAddress(req(undefined), 1)).toBe('10.9.9.9');
    expect(clientAddress(req(' , '), 1)).toBe('10.9.9.9');
    expect(clientAddress(req('6.6.6.6'), 0)).toBe('10.9.9.9');
    expect(clientAddress(req(['6.6.6.6', '7.7.7.7']), 1)).toBe('7.7.7.7');
  });

  it('maps the peer too: a dual-stack socket reports IPv4 clients as ::ffff:a.b.c.d', () => {
    expect(clientAddress(req(undefined, '::ffff:10.1.2.3'), 0)).toBe('10.1.2.3');
  });

  it('falls back to the peer, and says why, when the trusted entry is not an address', () => {
    const reasons: string[] = [];
    expect(clientAddress(req('1.1.1.1, garbage'), 1, (why) => reasons.push(why))).toBe('10.9.9.9');
    expect(reasons).toHaveLength(1);
    expect(reasons[0]).toContain('not an IP address');
  });

  it('never derives a client from anything but an IP address (property)', () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(fc.string(), fc.ipV4(), fc.ipV6(), fc.constant('[::1]:80')), { maxLength: 6 }), fc.integer({ min: 0, max: 4 }), (entries, hops) => {
        const address = clientAddress(req(entries.join(',')), hops);
        expect(isIP(address)).not.toBe(0);
        expect(address.length).toBeLessThanOrEqual(45);
      }),
    );
  });
});

describe('client identity on the token route (TRUST_PROXY=1)', () => {
  let t: TestApp;
  const from = (xff: string) =>
    t.app.inject({
      method: 'POST',
      url: '/v1/realtime/token',
      remoteAddress: '100.64.0.1',
      headers: { origin: SITE_ORIGIN, 'x-forwarded-for': xff },
    });

  it('one address in any spelling is one client: ports, brackets and ::ffff: get no fresh bucket', async () => {
    t = await openai.app({ TRUST_PROXY: '1', RATE_LIMIT_PER_MINUTE: '4' });
    for (const spelling of ['203.0.113.9', '203.0.113.9:5555', '::ffff:203.0.113.9', '[::ffff:203.0.113.9]:80']) {
      expect((await from(spelling)).statusCode).toBe(200);
    }
    expectEnvelope(await from('203.0.113.9:6666'), 429);
    expect(openai.fake.mintRequests).toHaveLength(4);
  });

  it('keys IPv6 clients by their /56: a whole home shares one limit, the next network does not', async () => {
    t = await openai.app({ TRUST_PROXY: '1', RATE_LIMIT_PER_MINUTE: '3' });
    for (const address of ['2001:db8:1:100::1', '2001:db8:1:1ff:abcd::2', '[2001:db8:1:180::3]:443']) {
      expect((await from(address)).statusCode).toBe(200);
    }
    expectEnvelope(await from('2001:db8:1:1aa::4'), 429);
    expect((await from('2001:db8:1:200::1')).statusCode).toBe(200);
  });

  it('RATE_LIMIT_IPV6_PREFIX=64 narrows the network', async () => {
    t = await openai.app({ TRUST_PROXY: '1', RATE_LIMIT_PER_MINUTE: '1', RATE_LIMIT_IPV6_PREFIX: '64' });
    expect((await from('2001:db8:1:100::1')).statusCode).toBe(200);
    expect((await from('2001:db8:1:101::1')).statusCode).toBe(200);
    expectEnvelope(await from('2001:db8:1:100::2'), 429);
  });

  it('a garbage entry is no client: the peer is used and the misconfiguration logged once', async () => {
    t = await openai.app({ TRUST_PROXY: '1', RATE_LIMIT_PER_MINUTE: '2' });
    expect((await from('not-an-ip')).statusCode).toBe(200);
    expect((await from('another garbage')).statusCode).toBe(200);
    // every garbage value lands in the peer's bucket, not a fresh one each
    expectEnvelope(await from('x'.repeat(300)), 429);
    const warnings = t.logs.lines.filter((line) => String(line.msg).startsWith('client address:'));
    expect(warnings).toHaveLength(1);
    expect(t.logs.find('client secret minted').every((line) => line.client_ip === '100.64.0.1')).toBe(true);
  });

  it('hostile X-Forwarded-For values never yield a 5xx, and every audit line names a real address (property)', async () => {
    t = await openai.app({ TRUST_PROXY: '1', RATE_LIMIT_PER_MINUTE: '1000000' });
    await fc.assert(
      fc.asyncProperty(fc.array(fc.oneof(fc.string({ maxLength: 60 }), fc.ipV4(), fc.ipV6(), fc.constantFrom('[', ']:', '::ffff:', '%', ':80')), { maxLength: 5 }), async (parts) => {
        await turn();
        const response = await from(parts.join(', ').replace(/[\r\n]/g, ''));
        expect(response.statusCode).toBeLessThan(500);
      }),
      { numRuns: 150 },
    );
    for (const line of t.logs.find('client secret minted')) expect(isIP(String(line.client_ip))).not.toBe(0);
  });
});
