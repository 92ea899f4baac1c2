// --sse-keepalive-secs: a streaming request that waits for its model gets 200, event-stream
// headers and SSE comment lines while it waits, then the model's events on the same response;
// a wait that fails ends the stream with an error event, and so does an upstream error answer.
// Requests that do not wait, and non-streaming ones, are answered as without the option.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Daemon, sseData, useDaemon } from './support/daemon.js';
import { crashes, expectedReply } from './support/sim.js';

const CHAT = '/v1/chat/completions';
const messages = [{ role: 'user', content: 'hi' }];
const COMMENT = ': sglangmux waiting for b\n\n';

/** The text content of a chat stream's data events. */
function streamedContent(events: readonly string[]): string {
  let text = '';
  for (const e of events) {
    if (e === '[DONE]') continue;
    const chunk = JSON.parse(e) as { choices: { delta: { content?: string } }[] };
    text += chunk.choices[0]?.delta.content ?? '';
  }
  return text;
}

/** Resolves once a generation for `model` reached its simulator (it is in flight). */
function inFlight(d: Daemon, model: string, from: number): Promise<unknown> {
  return d.waitLedger((e) => e.event === 'request' && e.model === model && e.route === CHAT, `a request on ${model}`, 15_000, from);
}

describe('keepalive comments while a stream waits for its model', () => {
  let d: Daemon;
  // a is awake after bootstrap; b sleeps.
  useDaemon((started) => (d = started), { models: [{ name: 'b' }, { name: 'a' }], args: ['--sse-keepalive-secs', '0.2', '--min-active-secs', '0'] });

  test('comments first, then the model\'s events on the same 200; waiting JSON and error answers too', async () => {
    const from = d.ledger().length;
    const long = d.chat('a', 600); // about 1.2 s in flight on a: b's requests wait for it
    await inFlight(d, 'a', from);

    const streamed = d.post(CHAT, { model: 'b', stream: true, max_tokens: 4, messages });
    const plain = d.chat('b', 3);
    const invalid = d.post(CHAT, { model: 'b', stream: true, max_tokens: 2 }); // no messages: the simulator answers 400

    const res = await streamed;
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
    const text = await res.text();
    assert.ok(text.startsWith(COMMENT), `starts with a comment: ${JSON.stringify(text.slice(0, 80))}`);
    const firstData = text.indexOf('data: ');
    assert.ok(firstData > 0);
    assert.ok(!text.slice(firstData).includes(': sglangmux'), 'no comment after the first event');
    const events = sseData(text.slice(text.lastIndexOf(COMMENT) + COMMENT.length));
    assert.equal(events.at(-1), '[DONE]');
    assert.equal(streamedContent(events), expectedReply('b', 4));

    // A non-streaming request waited without any of it: plain JSON.
    const { status, body } = await plain;
    assert.equal(status, 200);
    assert.equal(body.choices?.[0]?.message?.content, expectedReply('b', 3));

    // The upstream's 400 JSON, after the 200 went out: one error event in the OpenAI shape.
    const bad = await invalid;
    assert.equal(bad.status, 200);
    const badText = await bad.text();
    assert.ok(badText.startsWith(COMMENT));
    const badEvents = sseData(badText);
    assert.equal(badEvents.length, 1, badText);
    const err = JSON.parse(badEvents[0]!) as { error: { message: string; type: string; param: unknown; code: unknown } };
    assert.deepEqual(Object.keys(err.error).sort(), ['code', 'message', 'param', 'type']);
    assert.equal(err.error.code, 400);
    assert.equal(err.error.type, 'BadRequestError');

    assert.equal((await long).status, 200);
    assert.deepEqual(crashes(d.ledger()), []);
  });

  test('a stream that does not wait gets no comment', async () => {
    const res = await d.post(CHAT, { model: 'b', stream: true, max_tokens: 200, messages }); // b is awake now
    assert.equal(res.status, 200);
    const text = await res.text();
    assert.ok(text.startsWith('data: '), text.slice(0, 80));
    assert.ok(!text.includes(': sglangmux'));
    assert.equal(streamedContent(sseData(text)), expectedReply('b', 200));
  });
});

describe('keepalive: a wait that fails', () => {
  let d: Daemon;
  useDaemon((started) => (d = started), {
    models: [{ name: 'b' }, { name: 'a' }],
    args: ['--sse-keepalive-secs', '0.2', '--min-active-secs', '0', '--model-switch-timeout-secs', '1'],
  });

  test('ends the stream with an error event in the OpenAI shape (503 model not ready)', async () => {
    const from = d.ledger().length;
    const long = d.chat('a', 1500); // about 3 s in flight: b's 1 s wait times out first
    await inFlight(d, 'a', from);
    const logged = d.waitLog(/POST \/v1\/chat\/completions -> 503: model not ready: timed out/);
    const res = await d.post(CHAT, { model: 'b', stream: true, max_tokens: 4, messages });
    assert.equal(res.status, 200);
    const text = await res.text();
    assert.ok(text.startsWith(COMMENT), text.slice(0, 80));
    const events = sseData(text);
    assert.equal(events.length, 1, text);
    const err = JSON.parse(events[0]!) as { error: { message: string; type: string; param: unknown; code: unknown } };
    assert.equal(err.error.code, 'model_not_ready');
    assert.equal(err.error.type, 'server_error');
    assert.equal(err.error.param, null);
    assert.match(err.error.message, /^model not ready: timed out after 1 s waiting for b \(a is finishing 1 request\(s\)\)$/);
    await logged; // logged once, like any error
    assert.equal((await long).status, 200);
    assert.deepEqual(crashes(d.ledger()), []);
  });
});
