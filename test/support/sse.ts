// Reads a server-sent event stream from the daemon (log tails, the event feed) as it arrives:
// its `data:` payloads in order, with waits on what comes next.
import assert from 'node:assert/strict';

export class SseStream {
  readonly events: string[] = [];
  private buffer = '';
  private waiters: (() => void)[] = [];
  private readonly abort = new AbortController();
  ended = false;

  /** Opens `url`, asserting a 200 event stream. */
  static async open(url: string, headers: Record<string, string> = {}): Promise<SseStream> {
    const s = new SseStream();
    const res = await fetch(url, { signal: s.abort.signal, headers });
    assert.equal(res.status, 200, await (res.status === 200 ? '' : res.text()));
    assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
    void s.pump(res.body!.getReader());
    return s;
  }

  private async pump(reader: ReadableStreamDefaultReader<Uint8Array>): Promise<void> {
    const decoder = new TextDecoder();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        this.buffer += decoder.decode(value, { stream: true });
        let cut: number;
        while ((cut = this.buffer.indexOf('\n\n')) >= 0) {
          const event = this.buffer.slice(0, cut);
          this.buffer = this.buffer.slice(cut + 2);
          const data = event.split('\n').find((line) => line.startsWith('data: '));
          if (data !== undefined) this.events.push(data.slice('data: '.length));
        }
        this.wake();
      }
    } catch {
      // aborted
    }
    this.ended = true;
    this.wake();
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Resolves with the index of the first event from `from` on matching `re`. */
  async waitFor(re: RegExp, from = 0, timeoutMs = 15_000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.events.findIndex((e, k) => k >= from && re.test(e));
      if (i >= 0) return i;
      if (this.ended) throw new Error(`event stream ended without ${re}; events:\n${this.events.join('\n')}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no event matching ${re}; events:\n${this.events.join('\n')}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  close(): void {
    this.abort.abort();
  }
}
