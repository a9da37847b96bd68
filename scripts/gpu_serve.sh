#!/usr/bin/env bash
# GPU serve benchmark: `hlwq serve --device cuda` on a full-size model, driven by bench/serve_load.mjs (the official
# openai client) at 1, 4 and 16 concurrent streaming clients (4 requests of 64 tokens each), once with every weight
# resident and once under --gpu-memory 12GB (routed experts behind the expert cache). Logs and each run's JSON go
# under $OUT; one short table comes last. The model is $1; when it holds no config.json it is synthesized there as
# scripts/gpu_bench.sh does (`hlwq synth --like qwen3.6-35b-a3b`, random weights, exact shapes), so passing
# gpu_bench.sh's $SYNTH_DIR/qwen36-ct-int4 reuses that one.
# The client is the official openai npm package under Node when both are here (OPENAI_MJS=path/to/openai/index.mjs,
# else node_modules/openai/index.mjs here or in BIN_DIR), else bench/serve_load.py (same requests, same output).
# Usage: [OPENAI_MJS=…] scripts/gpu_serve.sh MODEL_DIR [BIN_DIR=build]   (DEVICE=cpu: a smoke test on the CPU)
set -uo pipefail
M=${1:?usage: scripts/gpu_serve.sh MODEL_DIR [BIN_DIR]}
BIN=${2:-build}
OUT=${OUT:-/tmp/hlwq-gpu-serve}
mkdir -p "$OUT"
export LD_LIBRARY_PATH="$BIN/lib:${LD_LIBRARY_PATH:-}"
here="$(cd "$(dirname "$0")/.." && pwd)"

# The client: the official openai package under Node when both are here, else bench/serve_load.py (the same
# requests and output over plain HTTP, Python's standard library: the GPU machine may have no Node).
OAI=${OPENAI_MJS:-}
for c in "$here/node_modules/openai/index.mjs" "$BIN/node_modules/openai/index.mjs"; do
  [ -z "$OAI" ] && [ -f "$c" ] && OAI="$c"
done
if node --version >/dev/null 2>&1 && [ -n "$OAI" ] && [ -f "$OAI" ]; then
  load=(node "$here/bench/serve_load.mjs" "$OAI")
  client="node $(node --version), $OAI"
elif python3 --version >/dev/null 2>&1; then
  load=(python3 "$here/bench/serve_load.py")
  client="$(python3 --version) bench/serve_load.py (no Node with the openai package here)"
else
  echo "gpu_serve: neither Node with the openai package nor Python 3 is here: the client could not run"
  exit 0
fi
echo "== client: $client; commit $(cat "$BIN/COMMIT" 2>/dev/null | tr '\n' ' ' || echo unknown)"

if [ ! -f "$M/config.json" ]; then
  mkdir -p "$M"
  /usr/bin/time -f "synth: %e s wall, %M KB peak RSS" "$BIN/hlwq" synth --like qwen3.6-35b-a3b "$M" --force \
    >"$OUT/synth.log" 2>&1 || { tail -5 "$OUT/synth.log"; exit 1; }
  tail -1 "$OUT/synth.log"
fi

http_get() {  # the body of a 200 response (Python: curl and Node may be missing on the GPU machine)
  python3 -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' \
    "$1" 2>/dev/null
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
    timeout 180 "${load[@]}" "$url" "$c" 4 64 >"$OUT/${name}_c$c.json" 2>"$OUT/${name}_c$c.err" \
      || { echo "$name c=$c: failed or cut at 180 s"; tail -3 "$OUT/${name}_c$c.err"; rm -f "$OUT/${name}_c$c.json"; }
  done
  http_get "${url%/v1}/metrics" >"$OUT/$name.metrics.txt"
  stop_server
}
serve resident
serve budget_12gb --gpu-memory 12GB

echo "== serve benchmark (JSON and logs in $OUT)"
python3 - "$OUT" <<'PY'
import json, os, sys
d = sys.argv[1]
print("run            clients  gen tok/s  TTFT p50/p99 ms    ITL p50/p99 ms")
for name in ["resident", "budget_12gb"]:
    for c in [1, 4, 16]:
        f = os.path.join(d, f"{name}_c{c}.json")
        if not os.path.exists(f) or not open(f).read().strip():
            print(f"{name:<14} {c:>7}  (no result)")
            continue
        j = json.loads(open(f).read().strip().splitlines()[-1])
        print(f"{name:<14} {c:>7} {j['gen_tok_s']:>10.1f}  {j['ttft_p50_ms']:.1f} / {j['ttft_p99_ms']:.1f}".ljust(52) +
              f"{j['itl_p50_ms']:.1f} / {j['itl_p99_ms']:.1f}")
PY
