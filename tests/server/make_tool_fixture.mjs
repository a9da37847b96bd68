// Writes the server's tool-call fixture model: the demo model's architecture and tokenizer, plus added tokens
// (special: false, as Qwen3's <tool_call> is) for the pieces of two scripted answers, with weights that make it a
// bigram model — every layer's output projection is zero, so the residual stream is the current token's embedding
// (random ±1), and lm_head maps each piece to the next (lm_head[next] = 0.1 · embedding[piece]: a logit of 25.6
// against cross terms of about ±1.6 per unrelated token). Greedy decoding then follows the script exactly, through
// the real engine, tokenizer, detokenizer and server — the output is produced by a model, not by the server.
//   after <think>   (the template opened thinking): reasoning, then an XML tool call before </think> closes;
//   after </think>  (enable_thinking false): a sentence, then a hermes JSON tool call;
//   after <loop>    (a completions prompt): <loop> again, forever (keeps a sequence busy for the 503 test).
// Usage: node make_tool_fixture.mjs DEMO_MODEL_DIR TEMPLATE OUT_DIR
import fs from 'node:fs';
import path from 'node:path';

const [demo, template, out] = process.argv.slice(2);
fs.mkdirSync(out, { recursive: true });

export const SCRIPTS = {
  '<think>': ['The user asks for the weather in Paris.\n', 'I will call the tool.\n', '<tool_call>\n',
              '<function=get_weather>\n', '<parameter=city>\n', 'Paris\n', '</parameter>\n', '</function>\n',
              '</tool_call>', '<|im_end|>'],
  '</think>': ['\n\nLet me look that up.', '<tool_call>', '\n{"name": "get_weather", ',
               '"arguments": {"city": ', '"Tokyo"}}', '\n</tool_call>', '<|im_end|>'],  // arguments in pieces
  '<loop>': ['<loop>'],
};

const tokenizer = JSON.parse(fs.readFileSync(path.join(demo, 'tokenizer.json'), 'utf8'));
const config = JSON.parse(fs.readFileSync(path.join(demo, 'config.json'), 'utf8'));
const idOf = new Map();
for (const a of tokenizer.added_tokens) idOf.set(a.content, a.id);
let next = config.vocab_size;
for (const [start, pieces] of Object.entries(SCRIPTS))
  for (const text of [start, ...pieces]) {
    if (idOf.has(text)) continue;
    idOf.set(text, next);
    tokenizer.added_tokens.push({ id: next++, content: text, single_word: false, lstrip: false, rstrip: false,
                                  normalized: false, special: false });
  }
const V = Math.ceil(next / 64) * 64;  // padded like real checkpoints; ids ≥ the tokenizer's are never sampled
config.vocab_size = V;
fs.writeFileSync(path.join(out, 'tokenizer.json'), JSON.stringify(tokenizer));
fs.writeFileSync(path.join(out, 'config.json'), JSON.stringify(config, null, 2));
const tc = JSON.parse(fs.readFileSync(path.join(demo, 'tokenizer_config.json'), 'utf8'));
delete tc.chat_template;
fs.writeFileSync(path.join(out, 'tokenizer_config.json'), JSON.stringify(tc, null, 2));
fs.copyFileSync(path.join(demo, 'generation_config.json'), path.join(out, 'generation_config.json'));
fs.copyFileSync(template, path.join(out, 'chat_template.jinja'));

// The demo's tensors (names, shapes), read from its safetensors headers.
const shapes = new Map();
for (const f of fs.readdirSync(demo).filter((f) => f.endsWith('.safetensors'))) {
  const buf = fs.readFileSync(path.join(demo, f));
  const n = Number(buf.readBigUInt64LE(0));
  const h = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  for (const [k, v] of Object.entries(h)) if (k !== '__metadata__') shapes.set(k, v.shape);
}
const H = config.hidden_size;
shapes.set('model.embed_tokens.weight', [V, H]);
shapes.set('lm_head.weight', [V, H]);

const BF16_ONE = 0x3f80, BF16_MINUS_ONE = 0xbf80;
let seed = 12345;  // xorshift32: the same model every run
const rnd = () => { seed ^= seed << 13; seed >>>= 0; seed ^= seed >>> 17; seed ^= seed << 5; seed >>>= 0; return seed; };
const embed = new Uint16Array(V * H);
const sign = new Int8Array(V * H);
for (let i = 0; i < V * H; ++i) { sign[i] = rnd() & 1 ? 1 : -1; embed[i] = sign[i] > 0 ? BF16_ONE : BF16_MINUS_ONE; }
const head = new Float32Array(V * H);
for (const [start, pieces] of Object.entries(SCRIPTS)) {
  const chain = [start, ...pieces];
  for (let i = 0; i + 1 < chain.length; ++i) {
    const from = idOf.get(chain[i]), to = idOf.get(chain[i + 1]);
    for (let j = 0; j < H; ++j) head[to * H + j] += sign[from * H + j];
  }
}
const lmHead = new Uint16Array(V * H);
const toBf16 = (x) => {  // round to nearest even
  const b = new Uint32Array(new Float32Array([x]).buffer)[0];
  return ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
};
for (let i = 0; i < V * H; ++i) lmHead[i] = head[i] === 0 ? 0 : toBf16(head[i] * 0.1);

const data = new Map([['model.embed_tokens.weight', embed], ['lm_head.weight', lmHead]]);
const names = [...shapes.keys()].sort();
const header = { __metadata__: { format: 'pt' } };
let offset = 0;
for (const k of names) {
  const bytes = shapes.get(k).reduce((a, b) => a * b, 1) * 2;
  header[k] = { dtype: 'BF16', shape: shapes.get(k), data_offsets: [offset, offset + bytes] };
  offset += bytes;
}
let hj = JSON.stringify(header);
hj += ' '.repeat((8 - (hj.length % 8)) % 8);
const file = Buffer.alloc(8 + hj.length + offset);
file.writeBigUInt64LE(BigInt(hj.length), 0);
file.write(hj, 8, 'utf8');
for (const k of names) {
  const at = 8 + hj.length + header[k].data_offsets[0];
  if (data.has(k)) Buffer.from(data.get(k).buffer).copy(file, at);
  else if (k === 'model.norm.weight') for (let j = 0; j < H; ++j) file.writeUInt16LE(BF16_ONE, at + 2 * j);
  // everything else stays zero: no layer adds to the residual stream
}
fs.writeFileSync(path.join(out, 'model.safetensors'), file);
console.log(`tool fixture: ${out} (vocab ${V}, ${tokenizer.added_tokens.length} added tokens)`);
