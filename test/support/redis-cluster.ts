import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Cluster, Redis } from 'ioredis';
import { freePort } from './redis-server.js';
import { waitUntil } from './wait.js';

const run = promisify(execFile);

/** One cluster node: its client port (kept across restarts) and its process. */
interface Node {
  port: number;
  child?: ChildProcess;
}

/** Tries for a node to bind its cluster-bus port (another process may take a free port first). */
const BUS_PORT_TRIES = 3;

/**
 * A real three-master Redis Cluster on loopback (no replicas), built the way an operator would:
 * `redis-server --cluster-enabled yes` three times, then `redis-cli --cluster create`. Nothing is
 * persisted: stop() and start() again on the same ports gives a cluster that restarted empty.
 */
export class RedisCluster {
  private readonly dir = mkdtempSync(join(tmpdir(), 'parker-cluster-'));

  private constructor(private readonly nodes: Node[]) {}

  static async start(size = 3): Promise<RedisCluster> {
    const nodes: Node[] = [];
    for (let i = 0; i < size; i++) nodes.push({ port: await freePort() });
    const cluster = new RedisCluster(nodes);
    await cluster.resume();
    return cluster;
  }

  /** `REDIS_CLUSTER_NODES` for the service: every node, comma-separated. */
  get nodeList(): string {
    return this.nodes.map((n) => `127.0.0.1:${n.port}`).join(',');
  }

  get ports(): number[] {
    return this.nodes.map((n) => n.port);
  }

  /** A cluster client for assertions and clean-up (the caller disconnects it). */
  client(): Cluster {
    return new Cluster(this.nodes.map((n) => ({ host: '127.0.0.1', port: n.port })));
  }

  /** Deletes every key on every master. */
  async flushAll(): Promise<void> {
    await Promise.all(
      this.nodes.map(async (n) => {
        const node = new Redis({ host: '127.0.0.1', port: n.port, lazyConnect: true });
        try {
          await node.connect();
          await node.flushall();
        } finally {
          node.disconnect();
        }
      }),
    );
  }

  /** Starts the nodes (with no data and no cluster state) and joins them into one cluster. */
  async resume(): Promise<void> {
    rmSync(this.dir, { recursive: true, force: true });
    mkdirSync(this.dir, { recursive: true });
    await Promise.all(this.nodes.map((n) => this.spawnNode(n)));
    await run('redis-cli', ['--cluster', 'create', ...this.nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', '0', '--cluster-yes'], {
      timeout: 20_000,
    });
    await Promise.all(this.nodes.map((n) => waitForClusterOk(n.port)));
  }

  /** Kills every node (SIGKILL): all data and cluster state is gone. */
  async stop(): Promise<void> {
    await Promise.all(
      this.nodes.map(async (n) => {
        const child = n.child;
        n.child = undefined;
        if (!child || child.exitCode !== null || child.signalCode !== null) return;
        const exited = once(child, 'exit');
        child.kill('SIGKILL');
        await exited;
      }),
    );
  }

  /** stop(), and the scratch directory removed. */
  async destroy(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }

  private async spawnNode(node: Node): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        // The bus port is set explicitly (cluster-port): the default, port + 10000, may be taken or
        // above 65535. Nodes reach each other through the cluster config, so a new one each start is fine.
        return await this.spawnNodeOnce(node, await freePort());
      } catch (error) {
        if (attempt >= BUS_PORT_TRIES || !String(error).includes('Address already in use')) throw error;
      }
    }
  }

  private async spawnNodeOnce(node: Node, busPort: number): Promise<void> {
    const child = spawn(
      'redis-server',
      [
        '--port', String(node.port),
        '--cluster-port', String(busPort),
        '--bind', '127.0.0.1',
        '--cluster-enabled', 'yes',
        '--cluster-config-file', join(this.dir, `nodes-${node.port}.conf`),
        '--cluster-node-timeout', '2000',
        '--dir', this.dir,
        '--save', '',
        '--appendonly', 'no',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    node.child = child;
    await new Promise<void>((resolve, reject) => {
      let output = '';
      child.stdout.on('data', (chunk: Buffer) => {
        output += chunk.toString();
        if (output.includes('Ready to accept connections')) resolve();
      });
      child.once('exit', (code) => reject(new Error(`redis-server (cluster node ${node.port}) exited (${code}): ${output}`)));
    });
  }
}

async function waitForClusterOk(port: number): Promise<void> {
  const node = new Redis({ host: '127.0.0.1', port, lazyConnect: true });
  try {
    await node.connect();
    await waitUntil(async () => String(await node.cluster('INFO')).includes('cluster_state:ok'), `cluster_state:ok on ${port}`, 20_000);
  } finally {
    node.disconnect();
  }
}
