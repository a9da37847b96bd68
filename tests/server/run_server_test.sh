#!/usr/bin/env bash
# Live-server test of `hlwq serve` (ctest: server_live): installs the official `openai` npm package into a scratch
# directory (no network: the test fails, loudly), starts the server on 127.0.0.1 with a free port and the model,
# runs the test script against it, then stops the server with SIGTERM and checks that it exits 0.
# Usage: run_server_test.sh HLWQ_BINARY MODEL_DIR [TEST_SCRIPT [SERVER_ARGS...]]
#   MODEL_DIR "tool-fixture": the tool-call fixture model, written into the scratch directory by make_tool_fixture.mjs
#   TEST_SCRIPT defaults to server_test.mjs (in this directory); SERVER_ARGS default to the demo test's.
set -euo pipefail
hlwq="$1"; model="$2"; here="$(cd "$(dirname "$0")" && pwd)"
test_script="${3:-server_test.mjs}"
shift $(( $# < 3 ? $# : 3 ))
server_args=("$@")
[ ${#server_args[@]} -gt 0 ] || server_args=(--max-num-seqs 16 --max-model-len 512 --max-waiting-requests 16)
scratch="$(mktemp -d)"
server_pid=""
cleanup() { if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; fi; rm -rf "$scratch"; }
trap cleanup EXIT
command -v node > /dev/null || { echo "server test: node is not installed" >&2; exit 1; }
if ! npm install --prefix "$scratch" --no-audit --no-fund --silent openai@4 > "$scratch/npm.log" 2>&1; then
  echo "server test: 'npm install openai' failed (is the npm registry reachable?):" >&2
  cat "$scratch/npm.log" >&2
  exit 1
fi
if [ "$model" = tool-fixture ]; then
  model="$scratch/tool-fixture"
  node "$here/make_tool_fixture.mjs" "$here/../../models/tiny-moe-dev" "$here/fixture/chat_template.jinja" "$model"
fi
"$hlwq" serve "$model" --port 0 "${server_args[@]}" \
  --served-model-name tiny --api-key test-key --enforce-eager --language-model-only -t 2 2> "$scratch/server.log" &
server_pid=$!
url=""
for _ in $(seq 1 600); do  # up to 60 s for the model to load
  url="$(grep -o 'http://127.0.0.1:[0-9]*/v1' "$scratch/server.log" || true)"
  [ -n "$url" ] && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$scratch/server.log" >&2; echo "server test: server died" >&2; exit 1; }
  sleep 0.1
done
[ -n "$url" ] || { cat "$scratch/server.log" >&2; echo "server test: no URL within 60 s" >&2; exit 1; }
grep -q "ignoring vLLM options that do not apply: --enforce-eager, --language-model-only" "$scratch/server.log" || {
  cat "$scratch/server.log" >&2; echo "server test: ignored options not reported" >&2; exit 1; }
status=0
KEY=test-key NODE_PATH="$scratch/node_modules" HLWQ="$hlwq" MODEL="$model" BASE="$url" \
  node "$here/$test_script" "$scratch/node_modules/openai/index.mjs" || status=$?
kill -TERM "$server_pid"
rc=0; wait "$server_pid" || rc=$?
server_pid=""
if [ "$rc" -ne 0 ]; then cat "$scratch/server.log" >&2; echo "server test: server exited $rc after SIGTERM" >&2; exit 1; fi
grep -q "stopped" "$scratch/server.log" || { echo "server test: no clean stop" >&2; exit 1; }
exit "$status"
