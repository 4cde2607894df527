// README's chat, thinking-budget and tool-call requests with the official `openai` client, against the demo model
// (models/demo, as `./lightmesh serve` serves it: model `demo`):
//   node demo.mjs http://127.0.0.1:8080/v1            checks (greedy where an exact answer is asserted); exit 1 on a failure
//   node demo.mjs http://127.0.0.1:8080/v1 --rates 20 also sends README's requests as written with seeds 1..20 and
//                                                     prints how often the reasoning closes and the tool call is well formed
// The demo model is a 6M-parameter model trained on tools/reference/chats.py's chats: it thinks in <think> and calls
// get_weather / calculator / convert_units, copying arguments from the question; its facts are often wrong.
import OpenAI from 'openai';
import assert from 'node:assert/strict';

const baseURL = process.argv[2] ?? process.env.OPENAI_BASE_URL ?? 'http://127.0.0.1:8080/v1';
const ratesIdx = process.argv.indexOf('--rates');
const rateSamples = ratesIdx > 0 ? Number(process.argv[ratesIdx + 1]) : 0;
const client = new OpenAI({ baseURL, apiKey: process.env.OPENAI_API_KEY ?? 'unused', maxRetries: 0, timeout: 120_000 });
const model = process.env.LIGHTMESH_MODEL ?? 'demo';

const fn = (name, description, properties, required) =>
  ({ type: 'function', function: { name, description, parameters: { type: 'object', properties, required } } });
const weather = fn('get_weather', 'Current weather in a city', { city: { type: 'string' } }, ['city']);
const calculator = fn('calculator', 'Evaluate an arithmetic expression', { expression: { type: 'string' } }, ['expression']);
const units = fn('convert_units', 'Convert a value from one unit to another',
  { value: { type: 'number' }, from_unit: { type: 'string' }, to_unit: { type: 'string' } }, ['value', 'from_unit', 'to_unit']);

const results = [];
async function check(name, body) {
  try {
    await body();
    results.push(name);
    console.log(`ok   ${name}`);
  } catch (e) {
    console.log(`FAIL ${name}: ${e?.stack ?? e}`);
    process.exit(1);
  }
}

// README: "A chat with a thinking budget"
const primeChat = (extra) => ({ model, messages: [{ role: 'user', content: 'Is 1001 prime?' }], max_tokens: 128, ...extra });

await check('readme chat: reasoning apart from the answer', async () => {
  const r = await client.chat.completions.create(primeChat({ max_thinking_tokens: 32, temperature: 0 }));
  const m = r.choices[0].message;
  assert.ok(typeof m.reasoning_content === 'string' && m.reasoning_content.length > 0, 'reasoning_content');
  assert.ok(m.reasoning_content.includes('1001'), `the reasoning is about the question: ${m.reasoning_content}`);
  assert.ok(typeof m.content === 'string' && m.content.length > 0, 'an answer');
  assert.ok(!m.content.includes('<think>') && !m.content.includes('</think>'), 'no tags in content');
  assert.ok(r.usage.completion_tokens_details.reasoning_tokens > 0, 'reasoning tokens counted');
  console.log(`     reasoning: ${JSON.stringify(m.reasoning_content)}\n     answer: ${JSON.stringify(m.content)}`);
});

await check('max_thinking_tokens cuts the reasoning short', async () => {
  const free = await client.chat.completions.create(primeChat({ max_tokens: 200, temperature: 0 }));
  const cut = await client.chat.completions.create(primeChat({ max_tokens: 200, temperature: 0, max_thinking_tokens: 8 }));
  const fullReasoning = free.choices[0].message.reasoning_content;
  const fullTokens = free.usage.completion_tokens_details.reasoning_tokens;
  const cutReasoning = cut.choices[0].message.reasoning_content;
  const cutTokens = cut.usage.completion_tokens_details.reasoning_tokens;
  assert.equal(free.choices[0].finish_reason, 'stop', 'without a budget the model closes its reasoning and answers');
  assert.ok(fullTokens > 16, `the unbounded reasoning is long (${fullTokens} tokens)`);
  assert.ok(cutTokens < fullTokens && cutTokens <= 8 + 4, `the budget cut it: ${cutTokens} of ${fullTokens} tokens`);
  assert.ok(cutReasoning.length > 0 && fullReasoning.startsWith(cutReasoning),
    `greedy: the cut reasoning is the start of the full one: ${JSON.stringify(cutReasoning)}`);
  assert.ok(cut.choices[0].message.content.length > 0, 'an answer after the forced </think>');
  console.log(`     ${fullTokens} reasoning tokens without a budget, ${cutTokens} with max_thinking_tokens 8: ${JSON.stringify(cutReasoning)}`);
});

// README: "Function calling", then the result goes back as a "tool" message
async function roundTrip(question, tools, result, extra = {}) {
  const messages = [{ role: 'user', content: question }];
  const first = await client.chat.completions.create({ model, max_tokens: 128, messages, tools, ...extra });
  const choice = first.choices[0];
  const calls = choice.message.tool_calls ?? [];
  if (choice.finish_reason !== 'tool_calls' || calls.length === 0) return { first, calls };
  messages.push(choice.message);
  for (const call of calls) messages.push({ role: 'tool', tool_call_id: call.id, content: result });
  const second = await client.chat.completions.create({ model, max_tokens: 128, messages, tools, ...extra });
  return { first, calls, second };
}

await check('readme tool call round trip (get_weather)', async () => {
  const { first, calls, second } = await roundTrip('Weather in Paris?', [weather], '{"sky":"sunny","celsius":21}', { temperature: 0 });
  assert.equal(first.choices[0].finish_reason, 'tool_calls', JSON.stringify(first.choices[0].message));
  assert.equal(first.choices[0].message.content, null);
  assert.ok(first.choices[0].message.reasoning_content.includes('Paris'), 'it reasons about the question first');
  assert.equal(calls.length, 1);
  assert.equal(calls[0].type, 'function');
  assert.equal(calls[0].function.name, 'get_weather');
  assert.deepEqual(JSON.parse(calls[0].function.arguments), { city: 'Paris' });
  assert.match(calls[0].id, /.+/);
  assert.equal(second.choices[0].finish_reason, 'stop');
  const answer = second.choices[0].message.content;
  // the tool's result is quoted; the city is copied from further back and a 6M model does not always get it right
  assert.ok(answer.includes('sunny') && answer.includes('21'), `the answer quotes the result: ${answer}`);
  console.log(`     get_weather(${calls[0].function.arguments}) -> ${JSON.stringify(answer)} `
    + `(second turn: ${second.usage.prompt_tokens} prompt tokens, ${second.usage.prompt_tokens_details?.cached_tokens ?? 0} cached)`);
});

await check('tool choice among three tools (calculator, convert_units)', async () => {
  const all = [weather, calculator, units];
  const calc = await roundTrip('What is 23 * 47?', all, '{"result":1081}', { temperature: 0 });
  assert.equal(calc.calls[0]?.function.name, 'calculator', JSON.stringify(calc.first.choices[0].message));
  assert.deepEqual(JSON.parse(calc.calls[0].function.arguments), { expression: '23 * 47' });
  assert.equal(calc.second.choices[0].finish_reason, 'stop');
  const conv = await roundTrip('Convert 5 km to miles.', all, '{"value":3.107,"unit":"miles"}', { temperature: 0 });
  assert.equal(conv.calls[0]?.function.name, 'convert_units', JSON.stringify(conv.first.choices[0].message));
  assert.deepEqual(JSON.parse(conv.calls[0].function.arguments), { value: 5, from_unit: 'km', to_unit: 'miles' });
  assert.equal(conv.second.choices[0].finish_reason, 'stop');
  console.log(`     calculator -> ${JSON.stringify(calc.second.choices[0].message.content)}; convert_units -> ${JSON.stringify(conv.second.choices[0].message.content)}`);
});

await check('streamed tool call', async () => {
  const stream = await client.chat.completions.create({
    model, max_tokens: 128, temperature: 0, stream: true, messages: [{ role: 'user', content: 'Weather in Paris?' }], tools: [weather],
  });
  let reasoning = '';
  let finish = null;
  const calls = [];
  for await (const chunk of stream) {
    const c = chunk.choices[0];
    if (!c) continue;
    reasoning += c.delta.reasoning_content ?? '';
    for (const t of c.delta.tool_calls ?? []) calls.push(t);
    if (c.finish_reason) finish = c.finish_reason;
  }
  assert.equal(finish, 'tool_calls');
  assert.ok(reasoning.includes('Paris'));
  assert.equal(calls.length, 1);
  assert.deepEqual(JSON.parse(calls[0].function.arguments), { city: 'Paris' });
});

if (rateSamples > 0) {
  // README's requests as written (server-default sampling), one seed each
  let closed = 0, answered = 0, wellFormed = 0, rightArgs = 0, quoted = 0, city = 0;
  for (let seed = 1; seed <= rateSamples; seed++) {
    const chat = await client.chat.completions.create(primeChat({ max_thinking_tokens: 32, seed }));
    const free = await client.chat.completions.create(primeChat({ max_tokens: 200, seed }));
    if (free.choices[0].finish_reason === 'stop' && free.choices[0].message.reasoning_content) closed++;
    if (chat.choices[0].message.content) answered++;
    const { calls, second } = await roundTrip('Weather in Paris?', [weather], '{"sky":"sunny","celsius":21}', { seed });
    if (calls.length > 0 && calls.every((c) => { try { JSON.parse(c.function.arguments); return true; } catch { return false; } })) wellFormed++;
    if (calls.length === 1 && calls[0].function.name === 'get_weather' && JSON.parse(calls[0].function.arguments).city === 'Paris') rightArgs++;
    const a = second?.choices[0].message.content ?? '';
    if (a.includes('sunny') && a.includes('21')) quoted++;
    if (a.includes('Paris')) city++;
  }
  console.log(`rates over ${rateSamples} seeds (README requests, default sampling): reasoning closed by the model ${closed}/${rateSamples}, `
    + `answer after a 32-token budget ${answered}/${rateSamples}, well-formed tool call ${wellFormed}/${rateSamples}, `
    + `get_weather {"city":"Paris"} ${rightArgs}/${rateSamples}, follow-up quotes sunny and 21 ${quoted}/${rateSamples}, names Paris ${city}/${rateSamples}`);
}

console.log(`all ${results.length} demo checks passed against ${baseURL} (model ${model})`);
