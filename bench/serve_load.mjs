// Load generator for `hlwq serve` (BENCHMARKS.md): C concurrent clients, each sending R streaming chat requests
// one after another through the official openai client; reports aggregate generation tok/s (completion tokens of
// all requests / wall time) and p50/p99 of time-to-first-token and inter-token latency (gaps between content chunks).
// Usage: node bench/serve_load.mjs OPENAI_INDEX_MJS BASE_URL CONCURRENCY [REQUESTS_PER_CLIENT=4] [MAX_TOKENS=64]
const [openaiPath, base, conc, perClient = '4', maxTokens = '64'] = process.argv.slice(2);
const { default: OpenAI } = await import(openaiPath);
const client = new OpenAI({ baseURL: base, apiKey: process.env.KEY ?? 'none', maxRetries: 0, timeout: 600000 });
const model = (await client.models.list()).data[0].id;
const ttft = [], itl = [];
let tokens = 0;
async function one(i, j) {
  const t0 = performance.now();
  let last = null;
  const s = await client.chat.completions.create({
    model, stream: true, stream_options: { include_usage: true }, max_tokens: Number(maxTokens), temperature: 0,
    messages: [{ role: 'user', content: `Client ${i}, request ${j}: write about the weather in city number ${i * 31 + j}.` }],
  });
  for await (const c of s) {
    if (c.usage) tokens += c.usage.completion_tokens;
    if (!c.choices[0]?.delta?.content) continue;
    const now = performance.now();
    if (last === null) ttft.push(now - t0); else itl.push(now - last);
    last = now;
  }
}
const t0 = performance.now();
await Promise.all(Array.from({ length: Number(conc) }, async (_, i) => {
  for (let j = 0; j < Number(perClient); ++j) await one(i, j);
}));
const wall = (performance.now() - t0) / 1000;
const pct = (a, p) => { const s = [...a].sort((x, y) => x - y); return s.length ? s[Math.min(s.length - 1, Math.floor(p * s.length))] : NaN; };
console.log(JSON.stringify({ concurrency: Number(conc), requests: Number(conc) * Number(perClient), tokens, wall_s: +wall.toFixed(2),
  gen_tok_s: +(tokens / wall).toFixed(1), ttft_p50_ms: +pct(ttft, 0.5).toFixed(1), ttft_p99_ms: +pct(ttft, 0.99).toFixed(1),
  itl_p50_ms: +pct(itl, 0.5).toFixed(1), itl_p99_ms: +pct(itl, 0.99).toFixed(1) }));
