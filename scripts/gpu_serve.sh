#!/usr/bin/env bash
# GPU serve benchmark: `hlwq serve --device cuda` on a full-size model, driven by bench/serve_load.mjs (the official
# openai client) at 1, 4 and 16 concurrent streaming clients (4 requests of 64 tokens each), once with every weight
# resident and once under --gpu-memory 12GB (routed experts behind the expert cache). Logs and each run's JSON go
# under $OUT; one short table comes last. The model is $1; when it holds no config.json it is synthesized there as
# scripts/gpu_bench.sh does (`hlwq synth --like qwen3.6-35b-a3b`, random weights, exact shapes), so passing
# gpu_bench.sh's $SYNTH_DIR/qwen36-ct-int4 reuses that one.
# Needs Node and the openai npm package (OPENAI_MJS=path/to/openai/index.mjs, else node_modules/openai/index.mjs
# here or in BIN_DIR): without them it says so and exits 0, having run nothing.
# Usage: [OPENAI_MJS=…] scripts/gpu_serve.sh MODEL_DIR [BIN_DIR=build]   (DEVICE=cpu: a smoke test on the CPU)
set -uo pipefail
M=${1:?usage: scripts/gpu_serve.sh MODEL_DIR [BIN_DIR]}
BIN=${2:-build}
OUT=${OUT:-/tmp/hlwq-gpu-serve}
mkdir -p "$OUT"
export LD_LIBRARY_PATH="$BIN/lib:${LD_LIBRARY_PATH:-}"
here="$(cd "$(dirname "$0")/.." && pwd)"

if ! node --version >/dev/null 2>&1; then
  echo "gpu_serve: node is not installed on this machine: the client could not run (carry a node binary)"
  exit 0
fi
OAI=${OPENAI_MJS:-}
for c in "$here/node_modules/openai/index.mjs" "$BIN/node_modules/openai/index.mjs"; do
  [ -z "$OAI" ] && [ -f "$c" ] && OAI="$c"
done
if [ -z "$OAI" ] || [ ! -f "$OAI" ]; then
  echo "gpu_serve: the openai npm package is missing (set OPENAI_MJS=…/openai/index.mjs): the client could not run"
  exit 0
fi
echo "== node $(node --version), client $OAI, commit $(cat "$BIN/COMMIT" 2>/dev/null | tr '\n' ' ' || echo unknown)"

if [ ! -f "$M/config.json" ]; then
  mkdir -p "$M"
  /usr/bin/time -f "synth: %e s wall, %M KB peak RSS" "$BIN/hlwq" synth --like qwen3.6-35b-a3b "$M" --force \
    >"$OUT/synth.log" 2>&1 || { tail -5 "$OUT/synth.log"; exit 1; }
  tail -1 "$OUT/synth.log"
fi

http_get() {  # the body of a 200 response (node: curl may be missing on the GPU machine)
  node -e 'fetch(process.argv[1]).then(async r => { if (!r.ok) process.exit(1); process.stdout.write(await r.text()); })
           .catch(() => process.exit(1))' "$1" 2>/dev/null
}

server_pid=""
stop_server() {  # by its PID only: a pattern kill would also hit this script's own shell
  [ -n "$server_pid" ] || return 0
  kill -TERM "$server_pid" 2>/dev/null
  for _ in $(seq 1 300); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.2; done
  kill -KILL "$server_pid" 2>/dev/null
  wait "$server_pid" 2>/dev/null
  server_pid=""
}
trap stop_server EXIT

serve() {  # serve NAME [SERVER ARGS...]: start, wait for /health, run the three loads, stop
  local name=$1
  shift
  "$BIN/hlwq" serve "$M" --device "${DEVICE:-cuda}" --port 0 --max-num-seqs 16 --max-model-len 4096 "$@" \
    2>"$OUT/$name.server.log" &
  server_pid=$!
  local url=""
  for _ in $(seq 1 1500); do  # up to 300 s: loading and uploading the model
    url="$(grep -o 'http://127.0.0.1:[0-9]*/v1' "$OUT/$name.server.log" | head -1)"
    [ -n "$url" ] && http_get "${url%/v1}/health" >/dev/null && break
    kill -0 "$server_pid" 2>/dev/null || { echo "$name: server died"; tail -5 "$OUT/$name.server.log"; server_pid=""; return; }
    url=""
    sleep 0.2
  done
  [ -n "$url" ] || { echo "$name: server not healthy within 300 s"; tail -5 "$OUT/$name.server.log"; stop_server; return; }
  grep "memory plan\|cuda:" "$OUT/$name.server.log" | head -4
  for c in 1 4 16; do
    timeout 180 node "$here/bench/serve_load.mjs" "$OAI" "$url" "$c" 4 64 >"$OUT/${name}_c$c.json" 2>"$OUT/${name}_c$c.err" \
      || { echo "$name c=$c: failed or cut at 180 s"; tail -3 "$OUT/${name}_c$c.err"; rm -f "$OUT/${name}_c$c.json"; }
  done
  http_get "${url%/v1}/metrics" >"$OUT/$name.metrics.txt"
  stop_server
}
serve resident
serve budget_12gb --gpu-memory 12GB

echo "== serve benchmark (JSON and logs in $OUT)"
node - "$OUT" <<'JS'
const fs = require('fs'), path = require('path');
const dir = process.argv[2];
console.log('run            clients  gen tok/s  TTFT p50/p99 ms    ITL p50/p99 ms');
for (const name of ['resident', 'budget_12gb'])
  for (const c of [1, 4, 16]) {
    const f = path.join(dir, `${name}_c${c}.json`);
    if (!fs.existsSync(f)) { console.log(`${name.padEnd(14)} ${String(c).padStart(7)}  (no result)`); continue; }
    const j = JSON.parse(fs.readFileSync(f, 'utf8').trim().split('\n').pop());
    console.log(`${name.padEnd(14)} ${String(c).padStart(7)} ${j.gen_tok_s.toFixed(1).padStart(10)}  ` +
                `${(j.ttft_p50_ms.toFixed(1) + ' / ' + j.ttft_p99_ms.toFixed(1)).padEnd(18)} ` +
                `${j.itl_p50_ms.toFixed(1)} / ${j.itl_p99_ms.toFixed(1)}`);
  }
JS
