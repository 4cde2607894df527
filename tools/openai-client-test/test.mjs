// Runs the official `openai` client against a LightMesh OpenAI-compatible endpoint:
//   node test.mjs http://127.0.0.1:8080/v1 [model]
// (or OPENAI_BASE_URL / LIGHTMESH_MODEL). Checks shapes and behaviour, not the model's wording, so that it can run
// against a real model as well as against the SDK's fake server. Exits 1 on the first failure. LIGHTMESH_CHECKS
// (comma-separated names) runs only those checks (a model that calls no tools skips the round trip).
import OpenAI from 'openai';
import assert from 'node:assert/strict';

const baseURL = process.argv[2] ?? process.env.OPENAI_BASE_URL ?? 'http://127.0.0.1:8080/v1';
const client = new OpenAI({ baseURL, apiKey: process.env.OPENAI_API_KEY ?? 'not-checked', maxRetries: 0, timeout: 120_000 });

const weatherTool = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Current weather in a city',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
  },
};

const results = [];
const only = process.env.LIGHTMESH_CHECKS?.split(',').map((n) => n.trim());
async function check(name, fn) {
  if (only && !only.includes(name)) {
    console.log(`skip ${name}`);
    return;
  }
  try {
    await fn();
    results.push(name);
    console.log(`ok   ${name}`);
  } catch (e) {
    console.log(`FAIL ${name}: ${e?.stack ?? e}`);
    process.exit(1);
  }
}

let model = process.argv[3] ?? process.env.LIGHTMESH_MODEL;

await check('models.list', async () => {
  const models = [];
  for await (const m of client.models.list()) models.push(m);
  assert.ok(models.length >= 1, 'at least one model');
  assert.equal(models[0].object, 'model');
  model ??= models[0].id;
  assert.ok(models.some((m) => m.id === model), `model ${model} is listed`);
});

await check('chat', async () => {
  const r = await client.chat.completions.create({
    model,
    messages: [{ role: 'system', content: 'Answer briefly.' }, { role: 'user', content: 'Say hello.' }],
    max_tokens: 256,
    temperature: 0,
    seed: 1,
  });
  assert.equal(r.object, 'chat.completion');
  assert.match(r.id, /^chatcmpl-/);
  const choice = r.choices[0];
  assert.ok(['stop', 'length'].includes(choice.finish_reason), choice.finish_reason);
  assert.equal(choice.message.role, 'assistant');
  assert.equal(typeof choice.message.content, 'string');
  const reasoning = choice.message.reasoning_content;
  assert.ok(reasoning === null || reasoning === undefined || typeof reasoning === 'string');
  assert.ok(!choice.message.content.includes('<think>'), 'reasoning is not mixed into content');
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
});

await check('stream with usage', async () => {
  const stream = await client.chat.completions.create({
    model,
    messages: [{ role: 'user', content: 'Count to five.' }],
    max_tokens: 256,
    stream: true,
    stream_options: { include_usage: true },
  });
  let content = '';
  let reasoning = '';
  let finish = null;
  let usage = null;
  let chunks = 0;
  for await (const chunk of stream) {
    chunks++;
    assert.equal(chunk.object, 'chat.completion.chunk');
    if (chunk.usage) usage = chunk.usage;
    const c = chunk.choices[0];
    if (!c) continue;
    content += c.delta.content ?? '';
    reasoning += c.delta.reasoning_content ?? '';
    if (c.finish_reason) finish = c.finish_reason;
  }
  assert.ok(chunks >= 3, `several chunks (${chunks})`);
  assert.ok(content.length > 0, 'some content');
  assert.ok(!content.includes('<think>'));
  assert.ok(['stop', 'length'].includes(finish), String(finish));
  assert.ok(usage && usage.completion_tokens > 0, 'a usage chunk at the end');
  console.log(`     streamed ${chunks} chunks, ${content.length} chars of content, ${reasoning.length} of reasoning`);
});

await check('tool call round trip', async () => {
  const messages = [{ role: 'user', content: 'What is the weather in Paris? Use the tool.' }];
  const first = await client.chat.completions.create({ model, messages, tools: [weatherTool], tool_choice: 'auto', max_tokens: 512 });
  const choice = first.choices[0];
  assert.equal(choice.finish_reason, 'tool_calls');
  const calls = choice.message.tool_calls;
  assert.ok(calls?.length >= 1, 'a tool call');
  assert.equal(calls[0].type, 'function');
  assert.equal(calls[0].function.name, 'get_weather');
  const args = JSON.parse(calls[0].function.arguments);
  assert.equal(typeof args.city, 'string');
  assert.ok(calls[0].id);

  messages.push(choice.message);
  for (const call of calls) {
    messages.push({ role: 'tool', tool_call_id: call.id, content: JSON.stringify({ city: args.city, sky: 'sunny', celsius: 21 }) });
  }
  const second = await client.chat.completions.create({ model, messages, tools: [weatherTool], max_tokens: 512 });
  assert.equal(second.choices[0].finish_reason, 'stop');
  assert.ok(second.choices[0].message.content.length > 0, 'an answer after the tool result');
  console.log(`     ${calls[0].function.name}(${calls[0].function.arguments}) -> "${second.choices[0].message.content}"`);
});

await check('logprobs and n', async () => {
  const r = await client.chat.completions.create({
    model,
    messages: [{ role: 'user', content: 'Say hello.' }],
    max_tokens: 16,
    seed: 5,
    n: 2,
    logprobs: true,
    top_logprobs: 3,
  });
  assert.equal(r.choices.length, 2);
  for (const [i, choice] of r.choices.entries()) {
    assert.equal(choice.index, i);
    const content = choice.logprobs?.content;
    assert.ok(Array.isArray(content) && content.length > 0, 'log-probabilities of the answer');
    for (const t of content) {
      assert.equal(typeof t.token, 'string');
      assert.ok(typeof t.logprob === 'number' && t.logprob <= 0, String(t.logprob));
      assert.ok(Array.isArray(t.bytes));
      assert.ok(t.top_logprobs.length >= 1 && t.top_logprobs.length <= 3, `${t.top_logprobs.length} alternatives`);
      for (let k = 1; k < t.top_logprobs.length; k++) assert.ok(t.top_logprobs[k - 1].logprob >= t.top_logprobs[k].logprob, 'most likely first');
    }
  }
  const again = await client.chat.completions.create({
    model, messages: [{ role: 'user', content: 'Say hello.' }], max_tokens: 16, seed: 5, n: 2,
  });
  assert.deepEqual(again.choices.map((c) => c.message.content), r.choices.map((c) => c.message.content), 'a seed makes the choices reproducible');
  console.log(`     ${r.choices.length} choices, first token "${r.choices[0].logprobs.content[0].token}" at ${r.choices[0].logprobs.content[0].logprob.toFixed(4)}`);
});

await check('streamed logprobs', async () => {
  const stream = await client.chat.completions.create({
    model, messages: [{ role: 'user', content: 'Count to five.' }], max_tokens: 16, stream: true, logprobs: true,
  });
  let tokens = 0;
  for await (const chunk of stream) {
    for (const c of chunk.choices) {
      for (const t of c.logprobs?.content ?? []) {
        assert.ok(typeof t.logprob === 'number' && t.logprob <= 0);
        tokens++;
      }
    }
  }
  assert.ok(tokens > 0, 'chunks carry the log-probabilities of their tokens');
});

await check('completions echo logprobs', async () => {
  const prompt = 'Once upon a time';
  const r = await client.completions.create({ model, prompt, echo: true, logprobs: 2, max_tokens: 4, temperature: 0 });
  const choice = r.choices[0];
  assert.ok(choice.text.startsWith(prompt), 'the prompt is echoed');
  const lp = choice.logprobs;
  assert.ok(lp.tokens.length >= 2, 'prompt and answer tokens');
  assert.equal(lp.token_logprobs[0], null, 'nothing predicts the first prompt token');
  assert.equal(lp.top_logprobs[0], null);
  assert.equal(lp.tokens.length, lp.token_logprobs.length);
  assert.equal(lp.tokens.length, lp.text_offset.length);
  for (let k = 1; k < lp.tokens.length; k++) {
    assert.ok(lp.token_logprobs[k] <= 0);
    assert.ok(lp.text_offset[k] >= lp.text_offset[k - 1]);
  }
  if (!lp.tokens.some((t) => t.includes('\uFFFD'))) assert.equal(lp.tokens.join(''), choice.text, 'the tokens spell the text');
});

await check('errors', async () => {
  await assert.rejects(
    client.chat.completions.create({ model: 'no-such-model', messages: [{ role: 'user', content: 'x' }] }),
    (e) => e instanceof OpenAI.NotFoundError && e.status === 404 && e.code === 'model_not_found',
  );
  await assert.rejects(
    client.chat.completions.create({ model, messages: [{ role: 'user', content: 'x' }], temperature: 5 }),
    (e) => e instanceof OpenAI.BadRequestError && e.status === 400 && e.param === 'temperature' && e.type === 'invalid_request_error',
  );
  await assert.rejects(
    client.chat.completions.create({ model, messages: [], stream: true }),
    (e) => e instanceof OpenAI.BadRequestError && e.param === 'messages',
  );
});

console.log(`all ${results.length} checks passed against ${baseURL} (model ${model})`);
