// A router in front of sglangmux daemons (LiteLLM's proxy, SGLang's gateway) for the scale-out
// tests: a process of its own (its own process group, stopped with it), its output kept for the
// failure message, ready when an HTTP probe answers.
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, request as httpRequest, type Server } from 'node:http';
import type { Daemon } from './daemon.js';
import { freePort } from './sim.js';

export class RouterProcess {
  output = '';
  private readonly proc: ChildProcess;
  private readonly exited: Promise<void>;

  constructor(readonly name: string, command: string, args: readonly string[], env: Readonly<Record<string, string>> = {}) {
    this.proc = spawn(command, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true, // its own group: a router's workers are stopped with it
      env: { ...process.env, ...env },
    });
    const keep = (chunk: Buffer): void => {
      // The tail is what explains a failure; a router may log a lot.
      this.output = (this.output + chunk.toString('utf8')).slice(-200_000);
    };
    this.proc.stdout!.on('data', keep);
    this.proc.stderr!.on('data', keep);
    this.exited = new Promise((resolve) => this.proc.once('exit', () => resolve()));
  }

  /** Polls `url` until it answers 200; fails with the router's output if it exits or is late. */
  async waitReady(url: string, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.proc.exitCode !== null || this.proc.signalCode !== null) {
        throw new Error(`${this.name} exited before it was ready; output:\n${this.output.slice(-5000)}`);
      }
      try {
        if ((await fetch(url)).status === 200) return;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) throw new Error(`${this.name} not ready within ${timeoutMs} ms; output:\n${this.output.slice(-5000)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  /** SIGTERM to its process group, SIGKILL after 10 s. */
  async stop(): Promise<void> {
    const pid = this.proc.pid;
    if (pid === undefined || this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    const signal = (sig: NodeJS.Signals): void => {
      try {
        process.kill(-pid, sig);
      } catch {
        // already gone
      }
    };
    signal('SIGTERM');
    const timer = setTimeout(() => signal('SIGKILL'), 10_000);
    await this.exited;
    clearTimeout(timer);
  }
}

/** How many chat completions reached the host's model servers (for `model`, or for any). */
export function chatRequests(d: Daemon, model?: string): number {
  return d.ledger().filter((e) => e.event === 'request' && e.route === '/v1/chat/completions' && (model === undefined || e.model === model)).length;
}

/** One chat completion through a router: its status and parsed body (text kept if not JSON). */
export interface RoutedAnswer {
  readonly model: string;
  readonly status: number;
  readonly content: string | null;
  readonly error: string | null;
  readonly headers: Headers;
}

export async function routedChat(baseUrl: string, model: string, maxTokens: number, headers: Record<string, string> = {}): Promise<RoutedAnswer> {
  const res = await fetch(`${baseUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ model, max_tokens: maxTokens, messages: [{ role: 'user', content: 'hi' }] }),
    signal: AbortSignal.timeout(120_000),
  });
  const text = await res.text();
  let body: { choices?: { message?: { content?: string } }[]; error?: { message?: unknown } } = {};
  try {
    body = JSON.parse(text) as typeof body;
  } catch {
    // kept as the error text below
  }
  const message = body.error?.message;
  return {
    model,
    status: res.status,
    content: body.choices?.[0]?.message?.content ?? null,
    error: res.status === 200 ? null : (typeof message === 'string' ? message : text),
    headers: res.headers,
  };
}

/**
 * A loopback HTTP forwarder in front of one host that counts the `GET /health` answers passing
 * through, by status: shows that a router's health checks arrive, and what they were told.
 */
export class HealthCountingForwarder {
  /** Statuses of the `GET /health` answers, in order. */
  readonly health: number[] = [];
  private readonly server: Server;

  private constructor(target: URL, readonly port: number) {
    this.server = createServer((req, res) => {
      const upstream = httpRequest(
        { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers },
        (up) => {
          if (req.method === 'GET' && req.url === '/health') this.health.push(up.statusCode ?? 0);
          res.writeHead(up.statusCode ?? 502, up.headers);
          up.pipe(res);
        },
      );
      // The host is gone: so is the connection, as if the router had called the host itself.
      upstream.once('error', () => res.destroy());
      req.pipe(upstream);
    });
  }

  static async start(target: string): Promise<HealthCountingForwarder> {
    const port = await freePort();
    const f = new HealthCountingForwarder(new URL(target), port);
    await new Promise<void>((r) => f.server.listen(port, '127.0.0.1', r));
    return f;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((r) => this.server.close(r));
  }
}
