// The official `openai` client through the daemon: chat (plain and streamed), completions,
// embeddings, the model list, and the daemon's OpenAI-shaped errors surfacing as the SDK's APIError.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import OpenAI from 'openai';
import { Daemon, useDaemon } from './support/daemon.js';
import { crashes, embeddingOf, expectedReply } from './support/sim.js';

describe('openai SDK', () => {
  let d: Daemon;
  let client: OpenAI;
  useDaemon((started) => {
    d = started;
    client = new OpenAI({ baseURL: `${d.url}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 20_000 });
  }, { models: [{ name: 'org/alpha' }, { name: 'beta' }] });

  test('chat.completions.create, not streaming (a switch to the sleeping model)', async () => {
    const res = await client.chat.completions.create({
      model: 'org/alpha', max_tokens: 5, messages: [{ role: 'user', content: 'hi' }],
    });
    assert.equal(res.object, 'chat.completion');
    assert.equal(res.choices[0]?.message.role, 'assistant');
    assert.equal(res.choices[0]?.message.content, expectedReply('org/alpha', 5));
    assert.equal(res.choices[0]?.finish_reason, 'length');
    assert.equal(res.usage?.completion_tokens, 5);
  });

  test('chat.completions.create with stream: true (a switch back)', async () => {
    const stream = await client.chat.completions.create({
      model: 'beta', max_tokens: 6, stream: true, messages: [{ role: 'user', content: 'hi' }],
    });
    let content = '';
    let chunks = 0;
    let finish: string | null = null;
    for await (const chunk of stream) {
      assert.equal(chunk.object, 'chat.completion.chunk');
      chunks++;
      content += chunk.choices[0]?.delta.content ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    assert.equal(content, expectedReply('beta', 6));
    assert.ok(chunks >= 6, `one chunk per token at least (${chunks})`);
    assert.equal(finish, 'length');
  });

  test('completions.create, plain and streamed', async () => {
    const res = await client.completions.create({ model: 'beta', prompt: 'Once upon', max_tokens: 4 });
    assert.equal(res.object, 'text_completion');
    assert.equal(res.choices[0]?.text, expectedReply('beta', 4));

    const stream = await client.completions.create({ model: 'beta', prompt: 'Once upon', max_tokens: 3, stream: true });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.text ?? '';
    assert.equal(text, expectedReply('beta', 3));
  });

  test('embeddings.create (the SDK asks for base64 and decodes it)', async () => {
    const res = await client.embeddings.create({ model: 'org/alpha', input: ['hello', 'world'] });
    assert.equal(res.object, 'list');
    assert.deepEqual(res.data.map((e) => e.index), [0, 1]);
    res.data.forEach((e, i) => {
      const want = embeddingOf('org/alpha', ['hello', 'world'][i]!);
      assert.equal(e.embedding.length, want.length);
      e.embedding.forEach((v, j) => assert.ok(Math.abs(v - want[j]!) < 1e-6, `${e.embedding.join()} vs ${want.join()}`));
    });
  });

  test('models.list() lists every configured model', async () => {
    const ids: string[] = [];
    for await (const model of client.models.list()) {
      assert.equal(model.object, 'model');
      ids.push(model.id);
    }
    assert.deepEqual(ids.sort(), ['beta', 'org/alpha']);
  });

  test('an unknown model is an APIError 404 with the daemon\'s message', async () => {
    await assert.rejects(
      client.chat.completions.create({ model: 'nope', messages: [{ role: 'user', content: 'hi' }] }),
      (err: unknown) => {
        assert.ok(err instanceof OpenAI.APIError, `an APIError, got ${String(err)}`);
        assert.ok(err instanceof OpenAI.NotFoundError);
        assert.equal(err.status, 404);
        assert.equal(err.message, '404 model not found: nope');
        assert.equal(err.code, 'model_not_found');
        assert.equal(err.type, 'invalid_request_error');
        assert.equal(err.param, 'model');
        assert.deepEqual(err.error, {
          message: 'model not found: nope', type: 'invalid_request_error', param: 'model', code: 'model_not_found',
        });
        return true;
      },
    );
    // Streaming requests get the same error before any event.
    await assert.rejects(
      client.chat.completions.create({ model: 'nope', stream: true, messages: [{ role: 'user', content: 'hi' }] }),
      (err: unknown) => err instanceof OpenAI.NotFoundError && err.message === '404 model not found: nope',
    );
    // The daemon keeps serving.
    const ok = await client.chat.completions.create({ model: 'beta', max_tokens: 2, messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(ok.choices[0]?.message.content, expectedReply('beta', 2));
    assert.deepEqual(crashes(d.ledger()), []);
  });
});
