// Time to first token of N clients that share a long system prompt (tools, instructions) against `hlwq serve`
// (BENCHMARKS.md, prefix cache): client after client sends the same system prompt and a question of its own,
// streaming, and records its TTFT; /metrics says how many prompt tokens the prefix cache (snapshots) supplied.
// Run it against a server with the prefix cache (default) and with --no-enable-prefix-caching.
// Usage: node bench/serve_shared_prefix.mjs OPENAI_INDEX_MJS BASE_URL [CLIENTS=8] [SYSTEM_SENTENCES=60] [MAX_TOKENS=16]
const [openaiPath, base, clients = '8', sentences = '60', maxTokens = '16'] = process.argv.slice(2);
const { default: OpenAI } = await import(openaiPath);
const client = new OpenAI({ baseURL: base, apiKey: process.env.KEY ?? 'none', maxRetries: 0, timeout: 600000 });
const model = (await client.models.list()).data[0].id;
const metric = async (name) => Number((await (await fetch(base.replace(/\/v1$/, '/metrics'))).text())
  .match(new RegExp(`^${name} (\\d+)$`, 'm'))[1]);
const system = Array.from({ length: Number(sentences) },
  (_, i) => `Rule ${i + 1}: answer briefly, cite the tool you used, and never invent a result.`).join(' ');
const rows = [];
const h0 = await metric('hlwq_prefix_cache_hits_total');
for (let c = 0; c < Number(clients); ++c) {
  const before = await metric('hlwq_prefix_cache_hits_total');
  const t0 = performance.now();
  let ttft = null, usage = null;
  const s = await client.chat.completions.create({ model, stream: true, temperature: 0, max_tokens: Number(maxTokens),
    stream_options: { include_usage: true },
    messages: [{ role: 'system', content: system }, { role: 'user', content: `Client ${c + 1}: what is ${c} + ${c}?` }] });
  for await (const ch of s) {
    if (ch.usage) usage = ch.usage;
    if (ch.choices[0]?.delta?.content && ttft === null) ttft = performance.now() - t0;
  }
  rows.push({ client: c + 1, prompt_tokens: usage.prompt_tokens, ttft_ms: +ttft.toFixed(1),
              reused: (await metric('hlwq_prefix_cache_hits_total')) - before });
}
console.log(JSON.stringify({ clients: rows, ttft_sum_ms: +rows.reduce((a, r) => a + r.ttft_ms, 0).toFixed(1),
                             prefix_cache_hit_tokens: (await metric('hlwq_prefix_cache_hits_total')) - h0 }));
