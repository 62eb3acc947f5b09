// The fake OpenAI in a process of its own for bench/sideband.ts, so the service's CPU and memory are
// measured without the fake's. Driven over IPC: each message { id, cmd, ... } is answered { id, ... }.
import { FakeOpenAI } from '../test/support/fake-openai.js';

type Command =
  | { id: number; cmd: 'calls' }
  | { id: number; cmd: 'push'; callIds: string[]; usage: object; perCall: number }
  /** One crossing event per call, `gapMs` apart; answers when each call is hung up: push -> hangup ms. */
  | { id: number; cmd: 'cross'; callIds: string[]; usage: object; gapMs: number }
  | { id: number; cmd: 'open' }
  | { id: number; cmd: 'close' };

const fake = await FakeOpenAI.start({ keepRequests: false });
const send = (message: object) => process.send?.(message);

async function crossing(callIds: string[], usage: object, gapMs: number): Promise<number[]> {
  const pushedAt = new Map<string, number>();
  for (const callId of callIds) {
    pushedAt.set(callId, Date.now());
    fake.pushResponseDone(callId, usage);
    await new Promise((resolve) => setTimeout(resolve, gapMs));
  }
  // The fake stamps each hangup with Date.now() on arrival (1 ms resolution).
  const delays: number[] = [];
  const pending = new Set(callIds);
  while (pending.size > 0) {
    for (const callId of pending) {
      const hungUpAt = fake.calls.get(callId)?.hungUpAt;
      if (hungUpAt !== undefined) {
        pending.delete(callId);
        delays.push(hungUpAt - (pushedAt.get(callId) ?? hungUpAt));
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  return delays;
}

process.on('message', (message: Command) => {
  void (async () => {
    switch (message.cmd) {
      case 'calls':
        return send({ id: message.id, callIds: [...fake.calls.keys()] });
      case 'open':
        return send({ id: message.id, open: fake.sidebandsOpen() });
      case 'push':
        for (let i = 0; i < message.perCall; i++) for (const callId of message.callIds) fake.pushResponseDone(callId, message.usage);
        return send({ id: message.id });
      case 'cross':
        return send({ id: message.id, delays: await crossing(message.callIds, message.usage, message.gapMs) });
      case 'close':
        await fake.close();
        send({ id: message.id });
        return process.exit(0);
    }
  })();
});
send({ ready: true, baseUrl: fake.baseUrl });
