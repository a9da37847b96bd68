#!/usr/bin/env bash
# Runs every libFuzzer target of a HLWQ_FUZZ build for a bounded time, starting from the seed corpora in
# tests/fuzz/corpus (read-only: new inputs go to a scratch corpus). Fails on any crash, leak, timeout, OOM or
# sanitizer report; the offending input is saved under the artifact directory and named in the output.
# Targets run HLWQ_FUZZ_JOBS at a time (default: the number of cores), each a single process for the full time, so
# every target gets the same executions as when run alone and the whole takes 1/jobs of the wall time.
# Usage: scripts/run_fuzzers.sh BUILD_DIR SECONDS_PER_TARGET [ARTIFACT_DIR] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:?usage: run_fuzzers.sh BUILD_DIR SECONDS [ARTIFACT_DIR] [TARGET...]}
secs=${2:?seconds per target}
artifacts=${3:-$build/fuzz-artifacts}
shift $(( $# < 3 ? $# : 3 ))
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(fuzz_safetensors fuzz_index fuzz_config fuzz_tokenizer fuzz_tokenizer_json fuzz_chat_template
                                fuzz_server_request fuzz_route_trace)
jobs=${HLWQ_FUZZ_JOBS:-$(nproc)}
mkdir -p "$artifacts"

# One target: its log in $artifacts/$t.log, its exit status in $artifacts/$t.rc.
fuzz_one() {
  local t="$1" work rc=0
  work=$(mktemp -d)
  # -timeout: one input taking longer is a hang; -rss_limit_mb: runaway memory; leaks are on by default.
  # TMPDIR: the targets' scratch files live in the work directory and go with it.
  mkdir -p "$work/corpus" "$work/tmp"
  TMPDIR="$work/tmp" "$build/tests/fuzz/$t" "$work/corpus" "tests/fuzz/corpus/$t" -max_total_time="$secs" -timeout=10 \
    -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 -artifact_prefix="$artifacts/$t-" >"$artifacts/$t.log" 2>&1 ||
    rc=$?
  echo "$rc" > "$artifacts/$t.rc"
  rm -rf "$work"
}

echo "fuzzing ${#targets[@]} targets ${secs}s each, $jobs at a time"
running=0
for t in "${targets[@]}"; do
  if [ "$running" -ge "$jobs" ]; then wait -n || true; running=$((running - 1)); fi
  rm -f "$artifacts/$t.rc"
  fuzz_one "$t" &
  running=$((running + 1))
done
wait
status=0
for t in "${targets[@]}"; do
  log="$artifacts/$t.log"
  echo "== $t (${secs}s)"
  if [ "$(cat "$artifacts/$t.rc" 2>/dev/null)" != 0 ]; then
    echo "FAILED: $t (log: $log)"; tail -n 40 "$log"; status=1
  else
    grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb)|cov: " "$log" | tail -n 3 || true
  fi
done
exit $status
