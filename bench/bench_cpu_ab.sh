#!/usr/bin/env bash
# CPU A/B of two hlwq_bench_model binaries on a Qwen3.6-35B-A3B-shaped CT INT4 slice (2 layers), generated on the
# spot: the table in BENCHMARKS.md "Engine core". Usage: bench_cpu_ab.sh BIN_DIR OLD_BENCH NEW_BENCH [THREADS...]
# BIN_DIR holds hlwq and hlwq_make_synthetic; the work dir (WORK, default /tmp/hlwq-ab) needs ~8 GB for a moment.
set -euo pipefail
BIN=$1 OLD=$2 NEW=$3; shift 3
THREADS=${*:-"16 2"}
W=${WORK:-/tmp/hlwq-ab}; mkdir -p "$W"
trap 'rm -rf "$W/slice-bf16" "$W/slice-int4"' EXIT
"$BIN/hlwq_make_synthetic" "$W/slice-bf16" --layers 2 --pattern mixed --force >&2
"$BIN/hlwq" quantize "$W/slice-bf16" "$W/slice-int4" --method rtn --force >&2
rm -rf "$W/slice-bf16"
for t in $THREADS; do
  for b in "$OLD" "$NEW"; do
    echo "=== $b, $t threads"
    "$b" "$W/slice-int4" --threads "$t" --repeats 3 --window 512 --prompt 512 --decode-tokens 16 --stream-mib 1024
  done
done
