// Time to first token of a multi-turn chat against `hlwq serve` (BENCHMARKS.md, prefix cache): one client sends
// turn after turn, each request carrying the whole conversation so far (earlier answers included), streaming, and
// records each turn's prompt tokens and TTFT; /metrics says how many prompt tokens the prefix cache supplied.
// Run it once against a server with the prefix cache (default) and once with --no-enable-prefix-caching.
// Usage: node bench/serve_prefix.mjs OPENAI_INDEX_MJS BASE_URL [TURNS=10] [MAX_TOKENS=48]
const [openaiPath, base, turns = '10', maxTokens = '48'] = process.argv.slice(2);
const { default: OpenAI } = await import(openaiPath);
const client = new OpenAI({ baseURL: base, apiKey: process.env.KEY ?? 'none', maxRetries: 0, timeout: 600000 });
const model = (await client.models.list()).data[0].id;
const hits = async () => Number((await (await fetch(base.replace(/\/v1$/, '/metrics'))).text())
  .match(/^hlwq_prefix_cache_hits_total (\d+)$/m)[1]);
const messages = [{ role: 'system', content: 'You are a patient tutor who answers in short paragraphs.' }];
const rows = [];
const h0 = await hits();
for (let t = 0; t < Number(turns); ++t) {
  messages.push({ role: 'user', content: `Question ${t + 1}: tell me one more fact about rivers and the sea.` });
  const t0 = performance.now();
  let ttft = null, text = '', usage = null;
  const s = await client.chat.completions.create({ model, messages, stream: true, temperature: 0,
    max_tokens: Number(maxTokens), stream_options: { include_usage: true } });
  for await (const c of s) {
    if (c.usage) usage = c.usage;
    const d = c.choices[0]?.delta?.content;
    if (d && ttft === null) ttft = performance.now() - t0;
    text += d ?? '';
  }
  messages.push({ role: 'assistant', content: text });
  rows.push({ turn: t + 1, prompt_tokens: usage.prompt_tokens, ttft_ms: +ttft.toFixed(1) });
}
const total = rows.reduce((a, r) => a + r.ttft_ms, 0);
console.log(JSON.stringify({ turns: rows, ttft_sum_ms: +total.toFixed(1), prefix_cache_hit_tokens: (await hits()) - h0,
                             prompt_tokens_sum: rows.reduce((a, r) => a + r.prompt_tokens, 0) }));
