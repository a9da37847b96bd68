// Drives a live `hlwq serve` (started by run_server_test.sh) with the official `openai` client for the happy
// paths and with raw fetch() for hostile inputs. Exits non-zero with a message at the first failed check.
// argv[2]: path of the openai package's index.mjs; env: BASE (…/v1), HLWQ (binary), MODEL (model dir), KEY.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const { default: OpenAI } = await import(process.argv[2]);
const BASE = process.env.BASE, KEY = process.env.KEY, ROOT = BASE.replace(/\/v1$/, '');
const client = new OpenAI({ baseURL: BASE, apiKey: KEY, maxRetries: 0, timeout: 60000 });
const MODEL = 'tiny';
let step = '';
const check = (name) => { step = name; console.log(`server test: ${name}`); };

async function metrics() {
  const text = await (await fetch(`${ROOT}/metrics`)).text();
  const get = (re) => { const m = text.match(re); return m ? Number(m[1]) : 0; };
  const byStatus = {};
  for (const m of text.matchAll(/^hlwq_requests_total\{status="(\d+)"\} (\d+)$/gm)) byStatus[m[1]] = Number(m[2]);
  return { byStatus, gen: get(/^hlwq_generation_tokens_total (\d+)$/m), prompt: get(/^hlwq_prompt_tokens_total (\d+)$/m),
           ttft: get(/^hlwq_time_to_first_token_seconds_count (\d+)$/m),
           hits: get(/^hlwq_prefix_cache_hits_total (\d+)$/m), snapHits: get(/^hlwq_prefix_snapshot_hits_total (\d+)$/m),
           kvUsed: get(/^hlwq_kv_blocks_used (\d+)$/m),
           kvCached: get(/^hlwq_kv_blocks_cached (\d+)$/m), text };
}
async function streamText(params, onChunk) {
  const s = await client.chat.completions.create({ ...params, stream: true });
  let text = '', finish = null, usage = null;
  for await (const c of s) {
    if (onChunk) onChunk(c, s);
    if (c.usage) usage = c.usage;
    for (const ch of c.choices) { text += ch.delta?.content ?? ''; if (ch.finish_reason) finish = ch.finish_reason; }
  }
  return { text, finish, usage };
}
const chatReq = (content, max_tokens = 16) =>
  ({ model: MODEL, messages: [{ role: 'user', content }], temperature: 0, max_tokens });
// `hlwq run` as a child process, asynchronously: the event loop must keep running meanwhile. (A synchronous
// execFileSync blocked it for as long as `hlwq run` took; when that passed the server's 5 s keep-alive timeout, as
// under ASan on a loaded machine, the client never saw the server close its idle pooled connection, sent the next
// request on it and got ECONNRESET, "Connection error.")
const hlwqRun = async (args) =>
  (await promisify(execFile)(process.env.HLWQ, ['run', process.env.MODEL, '--temp', '0', '-t', '1',
                                                '--no-display-prompt', ...args], { encoding: 'utf8' }))
    .stdout.replace(/\n$/, '');

try {
  const m0 = await metrics();
  let ok200 = 0;

  check('GET /v1/models through the client');
  const models = await client.models.list(); ok200++;
  assert.deepEqual(models.data.map((m) => m.id), [MODEL]);

  check('chat completion, non-streaming vs streaming vs hlwq run --chat (greedy)');
  const prompt = 'Tell me about the sea.';
  const full = await client.chat.completions.create(chatReq(prompt, 24)); ok200++;
  assert.equal(full.object, 'chat.completion');
  const text = full.choices[0].message.content;
  assert.ok(text.length > 0, 'empty answer');
  assert.equal(full.usage.total_tokens, full.usage.prompt_tokens + full.usage.completion_tokens);
  const st = await streamText({ ...chatReq(prompt, 24), stream_options: { include_usage: true } }); ok200++;
  assert.equal(st.text, text);
  assert.equal(st.finish, full.choices[0].finish_reason);
  assert.deepEqual(st.usage, full.usage);
  assert.equal(await hlwqRun(['--chat', '-p', prompt, '-n', '24']), text);

  check('text completion, non-streaming vs streaming vs hlwq run (greedy), stop, seed');
  const cp = 'The quick brown fox';
  const c1 = await client.completions.create({ model: MODEL, prompt: cp, temperature: 0, max_tokens: 20 }); ok200++;
  assert.equal(c1.object, 'text_completion');
  let ctext = '';
  for await (const c of await client.completions.create({ model: MODEL, prompt: cp, temperature: 0, max_tokens: 20,
                                                          stream: true })) ctext += c.choices[0]?.text ?? '';
  ok200++;
  assert.equal(ctext, c1.choices[0].text);
  assert.equal(await hlwqRun(['-p', cp, '-n', '20']), c1.choices[0].text);
  const seeded = async () => (await client.completions.create({ model: MODEL, prompt: cp, temperature: 1, top_k: 50,
                                                                top_p: 0.9, seed: 7, max_tokens: 12 })).choices[0].text;
  assert.equal(await seeded(), await seeded()); ok200 += 2;
  const lp = await client.chat.completions.create({ ...chatReq(prompt, 4), logprobs: true, top_logprobs: 3 }); ok200++;
  assert.equal(lp.choices[0].logprobs.content.length, lp.usage.completion_tokens - (lp.choices[0].finish_reason === 'stop' ? 1 : 0));
  assert.equal(lp.choices[0].logprobs.content[0].top_logprobs.length, 3);
  if (text.length > 4) {
    const stop = text.slice(2, 4);
    const sr = await client.chat.completions.create({ ...chatReq(prompt, 24), stop: [stop] }); ok200++;
    assert.equal(sr.choices[0].message.content, text.slice(0, text.indexOf(stop)));
    assert.equal(sr.choices[0].finish_reason, 'stop');
  }

  check('16 concurrent streaming clients each get their single-client greedy output');
  const prompts = Array.from({ length: 16 }, (_, i) => `Count with me: ${i} and ${i * 7 + 3}.`);
  const single = [];
  for (const p of prompts) { single.push((await client.chat.completions.create(chatReq(p, 16))).choices[0].message.content); ok200++; }
  const together = await Promise.all(prompts.map((p) => streamText(chatReq(p, 16))));
  ok200 += 16;
  together.forEach((r, i) => assert.equal(r.text, single[i], `client ${i}`));

  check('a client dropped mid-stream disturbs no other');
  const others = prompts.slice(0, 3).map((p) => streamText(chatReq(p, 16)));
  const dropped = (async () => {
    const s = await client.chat.completions.create({ ...chatReq('Write a long story.', 400), stream: true });
    let n = 0;
    for await (const _ of s) if (++n === 3) { s.controller.abort(); break; }
  })();
  await dropped;
  ok200 += 1;  // the response status was 200 before the client went away
  (await Promise.all(others)).forEach((r, i) => assert.equal(r.text, single[i], `client ${i} next to a dropped one`));
  ok200 += 3;

  check('prefix cache: the next turn of a chat continues the cached sequence, with the answer of a full prefill');
  const turn1 = [{ role: 'user', content: 'Name a color.' }];
  const a1 = await client.chat.completions.create({ model: MODEL, messages: turn1, temperature: 0, max_tokens: 12 });
  const turn2 = { model: MODEL, temperature: 0, max_tokens: 12, messages: [...turn1,
    { role: 'assistant', content: a1.choices[0].message.content }, { role: 'user', content: 'And another one?' }] };
  const p0 = await metrics();
  const continued = await client.chat.completions.create(turn2);
  const p1 = await metrics();
  // turn 1's sequence was taken: the same request again resumes from the snapshot that `continued` took at the
  // end of its prompt's last full KV block (16 tokens)
  const full2 = await client.chat.completions.create(turn2);
  const p2 = await metrics();
  ok200 += 3;
  // Everything turn 1 fed to the model was reused: its prompt and its answer but the last sampled token.
  assert.equal(p1.hits - p0.hits, a1.usage.prompt_tokens + a1.usage.completion_tokens - 1);
  assert.equal(p1.snapHits, p0.snapHits);
  assert.equal(p2.hits - p1.hits, Math.floor(continued.usage.prompt_tokens / 16) * 16);
  assert.equal(p2.snapHits - p1.snapHits, p2.hits - p1.hits);
  assert.equal(continued.choices[0].message.content, full2.choices[0].message.content);
  assert.deepEqual(continued.usage, full2.usage);

  check('hostile inputs get their 4xx with an OpenAI error body; /health stays OK');
  const post = async (path, body, { key = KEY, type = 'application/json' } = {}) => {
    const headers = { 'content-type': type };
    if (key !== null) headers.authorization = `Bearer ${key}`;
    const r = await fetch(`${ROOT}${path}`, { method: 'POST', headers, body });
    const j = await r.json();
    assert.deepEqual(Object.keys(j.error).sort(), ['code', 'message', 'param', 'type'], JSON.stringify(j));
    assert.equal(typeof j.error.message, 'string');
    assert.equal((await fetch(`${ROOT}/health`)).status, 200, 'health after a bad request');
    return { status: r.status, error: j.error };
  };
  const msgs = [{ role: 'user', content: 'hi' }];
  const bad = [
    [400, '/v1/chat/completions', '{"model": "tiny", "messages": [', ''],
    [400, '/v1/chat/completions', JSON.stringify({ model: MODEL, messages: msgs, temperature: 'hot' }), 'temperature'],
    [400, '/v1/chat/completions', JSON.stringify({ model: MODEL, messages: 'hi' }), 'messages'],
    [400, '/v1/chat/completions', JSON.stringify({ model: MODEL, messages: [] }), 'messages'],
    [400, '/v1/chat/completions', JSON.stringify({ model: MODEL, messages: [{ role: 'wizard', content: 'x' }] }), 'messages[0].role'],
    [400, '/v1/chat/completions', JSON.stringify({ model: MODEL, messages: msgs, max_tokens: 100000 }), 'max_tokens'],
    [400, '/v1/completions', JSON.stringify({ model: MODEL, prompt: 'word '.repeat(2000) }), 'prompt'],
    [400, '/v1/chat/completions', JSON.stringify({ model: MODEL, messages: msgs, n: 2 }), 'n'],
    [400, '/v1/completions', JSON.stringify({ model: MODEL, prompt: 5 }), 'prompt'],
    [404, '/v1/chat/completions', JSON.stringify({ model: 'gpt-4', messages: msgs }), 'model'],
  ];
  const counts = {};
  for (const [status, path, body, param] of bad) {
    const r = await post(path, body);
    assert.equal(r.status, status, `${body.slice(0, 60)}: ${JSON.stringify(r.error)}`);
    if (param) assert.equal(r.error.param, param);
    counts[status] = (counts[status] ?? 0) + 1;
  }
  assert.equal((await post('/v1/chat/completions', JSON.stringify({ messages: msgs }), { key: null })).status, 401);
  assert.equal((await post('/v1/chat/completions', JSON.stringify({ messages: msgs }), { key: 'wrong' })).status, 401);
  counts[401] = 2;
  const big = JSON.stringify({ model: MODEL, prompt: 'x'.repeat(9 << 20) });
  assert.equal((await post('/v1/completions', big)).status, 413);
  counts[413] = 1;

  check('/metrics counters moved by exactly the requests made');
  const m1 = await metrics();
  const delta = (s) => (m1.byStatus[s] ?? 0) - (m0.byStatus[s] ?? 0);
  assert.equal(delta('200'), ok200, m1.text);
  for (const [s, n] of Object.entries(counts)) assert.equal(delta(s), n, `status ${s}\n${m1.text}`);
  assert.ok(m1.gen > m0.gen && m1.prompt > m0.prompt && m1.ttft > m0.ttft);
  assert.match(m1.text, /^hlwq_requests_running 0$/m);
  assert.equal(m1.kvUsed, m1.kvCached, 'KV blocks in use beyond those of cached sequences');
  console.log('server test: all checks passed');
} catch (e) {
  // The client's "Connection error." says nothing by itself: print the chain of causes (the socket's own error code).
  let why = String(e?.message ?? e);
  for (let c = e?.cause; c; c = c.cause) why += ` <- ${c.code ?? c.name ?? ''}: ${c.message ?? c}`;
  console.error(`server test: FAILED at "${step}" after ${process.uptime().toFixed(1)} s:`, why);
  process.exit(1);
}
