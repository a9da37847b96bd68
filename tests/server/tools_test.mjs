// Drives a live `hlwq serve --reasoning-parser qwen3` on the tool-call fixture model (make_tool_fixture.mjs: a
// bigram model whose greedy output is scripted by its weights) with the official `openai` client:
// reasoning_content and tool_calls come back streamed and not (an XML call written before </think> closes, a hermes
// JSON call after an empty think block set by chat_template_kwargs), a tool result is accepted on the next turn,
// tool_choice "none" leaves calls as text; then, with raw HTTP, the bounded waiting queue overflows into a 503 with
// an OpenAI error body. Started by run_server_test.sh with --max-num-seqs 2 --max-waiting-requests 1.
import assert from 'node:assert/strict';

const { default: OpenAI } = await import(process.argv[2]);
const BASE = process.env.BASE, KEY = process.env.KEY, ROOT = BASE.replace(/\/v1$/, '');
const client = new OpenAI({ baseURL: BASE, apiKey: KEY, maxRetries: 0, timeout: 60000 });
const MODEL = 'tiny';
let step = '';
const check = (name) => { step = name; console.log(`tools test: ${name}`); };

const tools = [{ type: 'function', function: { name: 'get_weather', description: 'Current weather of a city',
                 parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } } }];
const ask = [{ role: 'user', content: 'What is the weather?' }];
const req = (extra = {}) => ({ model: MODEL, messages: ask, tools, temperature: 0, max_tokens: 64, ...extra });

// A streamed answer put together as a client does: text deltas concatenated, tool-call deltas merged by index.
async function streamed(params) {
  const s = await client.chat.completions.create({ ...params, stream: true });
  let content = '', reasoning = '', finish = null;
  const calls = [];
  for await (const c of s)
    for (const ch of c.choices) {
      content += ch.delta?.content ?? '';
      reasoning += ch.delta?.reasoning_content ?? '';
      for (const tc of ch.delta?.tool_calls ?? []) {
        const call = (calls[tc.index] ??= { id: '', type: '', function: { name: '', arguments: '' }, pieces: 0 });
        if (tc.id) call.id = tc.id;
        if (tc.type) call.type = tc.type;
        call.function.name += tc.function?.name ?? '';
        call.function.arguments += tc.function?.arguments ?? '';
        if (tc.function?.arguments) call.pieces += 1;
      }
      if (ch.finish_reason) finish = ch.finish_reason;
    }
  return { content, reasoning, calls, finish };
}
const metric = async (name) => Number((await (await fetch(`${ROOT}/metrics`)).text())
  .match(new RegExp(`^${name} (\\d+)$`, 'm'))[1]);
const waitFor = async (what, pred) => {
  for (let i = 0; i < 200; ++i) { if (await pred()) return; await new Promise((r) => setTimeout(r, 50)); }
  throw new Error(`timed out waiting for ${what}`);
};

try {
  check('XML tool call written inside <think>: reasoning_content and tool_calls, non-streaming');
  const a = await client.chat.completions.create(req());
  const msg = a.choices[0].message;
  assert.equal(a.choices[0].finish_reason, 'tool_calls');
  assert.equal(msg.reasoning_content, 'The user asks for the weather in Paris.\nI will call the tool.\n');
  assert.equal(msg.content, null);
  assert.equal(msg.tool_calls.length, 1);
  assert.match(msg.tool_calls[0].id, /^call_/);
  assert.equal(msg.tool_calls[0].type, 'function');
  assert.equal(msg.tool_calls[0].function.name, 'get_weather');
  assert.deepEqual(JSON.parse(msg.tool_calls[0].function.arguments), { city: 'Paris' });

  check('the same streamed: reasoning deltas, one tool call (its arguments in pieces), finish_reason tool_calls');
  const s = await streamed(req());
  assert.equal(s.reasoning, msg.reasoning_content);
  assert.equal(s.content, '');
  assert.equal(s.finish, 'tool_calls');
  assert.equal(s.calls.length, 1);
  assert.equal(s.calls[0].function.name, 'get_weather');
  assert.equal(s.calls[0].function.arguments, msg.tool_calls[0].function.arguments);
  assert.ok(s.calls[0].pieces > 1, `arguments in ${s.calls[0].pieces} delta(s)`);

  check('hermes JSON call after enable_thinking false (chat_template_kwargs), streamed and not');
  const off = req({ chat_template_kwargs: { enable_thinking: false } });
  const b = await client.chat.completions.create(off);
  assert.equal(b.choices[0].finish_reason, 'tool_calls');
  assert.equal(b.choices[0].message.content, '\n\nLet me look that up.');
  assert.equal(b.choices[0].message.reasoning_content, null);
  assert.equal(b.choices[0].message.tool_calls[0].function.name, 'get_weather');
  assert.deepEqual(JSON.parse(b.choices[0].message.tool_calls[0].function.arguments), { city: 'Tokyo' });
  const bs = await streamed(off);
  assert.equal(bs.content, b.choices[0].message.content);
  assert.equal(bs.reasoning, '');
  assert.equal(bs.calls[0].function.arguments, b.choices[0].message.tool_calls[0].function.arguments);
  assert.ok(bs.calls[0].pieces > 1, `arguments in ${bs.calls[0].pieces} delta(s)`);

  check('the tool result goes back on the next turn');
  const next = await client.chat.completions.create(req({ messages: [...ask, msg,
    { role: 'tool', tool_call_id: msg.tool_calls[0].id, content: '{"temperature": 18, "sky": "clear"}' }] }));
  assert.ok(next.usage.prompt_tokens > a.usage.prompt_tokens + 20, `${next.usage.prompt_tokens} vs ${a.usage.prompt_tokens}`);
  assert.equal(next.choices[0].finish_reason, 'tool_calls');

  check('tool_choice "none": the call stays text');
  const none = await client.chat.completions.create(req({ tool_choice: 'none' }));
  assert.equal(none.choices[0].finish_reason, 'stop');
  assert.equal(none.choices[0].message.tool_calls, undefined);
  assert.match(none.choices[0].message.reasoning_content, /<tool_call>\n<function=get_weather>/);

  check('the waiting queue overflows: 503 with an OpenAI error body');
  const headers = { 'content-type': 'application/json', authorization: `Bearer ${KEY}` };
  const body = (n) => JSON.stringify({ model: MODEL, prompt: '<loop>', temperature: 0, max_tokens: n, stream: true });
  const busy = [];
  for (let i = 0; i < 2; ++i) {  // two streams hold both sequences (--max-num-seqs 2) until aborted
    const ac = new AbortController();
    const r = await fetch(`${BASE}/completions`, { method: 'POST', headers, body: body(4000), signal: ac.signal });
    assert.equal(r.status, 200);
    const reader = r.body.getReader();
    await reader.read();
    busy.push({ ac, reader });
  }
  assert.equal(await metric('hlwq_requests_running'), 2);
  const queued = fetch(`${BASE}/completions`, { method: 'POST', headers, body: body(3) });  // waits for a sequence
  await waitFor('a waiting request', async () => (await metric('hlwq_requests_waiting')) === 1);
  const over = await fetch(`${BASE}/completions`, { method: 'POST', headers, body: body(3) });
  assert.equal(over.status, 503);
  const err = (await over.json()).error;
  assert.deepEqual(Object.keys(err).sort(), ['code', 'message', 'param', 'type']);
  assert.equal(err.code, 'server_overloaded');
  assert.equal(err.type, 'server_error');
  assert.equal((await fetch(`${ROOT}/health`)).status, 200);
  for (const { ac } of busy) ac.abort();
  const q = await queued;  // a freed sequence takes the waiting request
  assert.equal(q.status, 200);
  const qtext = await q.text();
  assert.equal(qtext.match(/"text":"<loop>"/g)?.length, 3, qtext);
  assert.match(qtext, /data: \[DONE\]\n\n$/);
  await waitFor('idle', async () => (await metric('hlwq_requests_running')) === 0);
  console.log('tools test: all checks passed');
} catch (e) {
  // The client's "Connection error." says nothing by itself: print the chain of causes (the socket's own error code).
  let why = String(e?.message ?? e);
  for (let c = e?.cause; c; c = c.cause) why += ` <- ${c.code ?? c.name ?? ''}: ${c.message ?? c}`;
  console.error(`tools test: FAILED at "${step}" after ${process.uptime().toFixed(1)} s:`, why);
  process.exit(1);
}
