#!/usr/bin/env bash
# CPU inference benchmark (not a test): prefill and decode tok/s of hlwq's forward on tiny-moe-dev (bf16 and
# RTN INT4) and on a Qwen3.6-35B-A3B-shaped INT4 slice, against memory and FMA ceilings measured in the same
# run (hlwq_bench_model prints the markdown tables). The slice is a synthetic bf16 checkpoint with the real
# model's exact tensor shapes but LAYERS layers (hlwq_make_synthetic, pattern "mixed": layer 0 is
# linear_attention, layer 1 full_attention), quantized with `hlwq quantize --method rtn`; random weights are fine
# for speed. Everything written under the work dir is removed at the end (peak disk ≈ 8 GB with 2 layers:
# 5.1 GB bf16, deleted once quantized, + 2.8 GB INT4).
#
# Environment (all optional):
#   HLWQ_BENCH_DIR  work dir (default /tmp/hlwq-bench-model)   BUILD_DIR  build dir (default <repo>/build-bench)
#   LAYERS          layers of the slice (default 2)            THREADS    thread counts (default "1 $(nproc)")
#   REPEATS         timed runs per figure (default 3)          WINDOW     prefill window (default 512)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${HLWQ_BENCH_DIR:-/tmp/hlwq-bench-model}
BUILD=${BUILD_DIR:-$ROOT/build-bench}
LAYERS=${LAYERS:-2}
THREADS=${THREADS:-"1 $(nproc)"}
REPEATS=${REPEATS:-3}
WINDOW=${WINDOW:-512}
TINY=$ROOT/models/tiny-moe-dev
TINY_INT4=$WORK/tiny-moe-dev-int4
SLICE_BF16=$WORK/qwen36-slice-${LAYERS}l-bf16
SLICE_INT4=$WORK/qwen36-slice-${LAYERS}l-int4

log() { echo "[bench_model] $*" >&2; }
mkdir -p "$WORK"
trap 'rm -rf "$TINY_INT4" "$SLICE_BF16" "$SLICE_INT4"' EXIT

if [[ ! -f $BUILD/build.ninja ]]; then
  cmake -S "$ROOT" -B "$BUILD" -G Ninja -DHLWQ_BUILD_TESTS=OFF >&2
fi
cmake --build "$BUILD" --target hlwq hlwq_make_synthetic hlwq_bench_model >&2

log "synthetic Qwen3.6-shaped slice, $LAYERS layers (uptime:$(uptime | sed 's/.*load/ load/'))"
"$BUILD/hlwq_make_synthetic" "$SLICE_BF16" --layers "$LAYERS" --pattern mixed --force >&2
log "quantizing (rtn) the slice and tiny-moe-dev"
"$BUILD/hlwq" quantize "$SLICE_BF16" "$SLICE_INT4" --method rtn -q --force >&2
rm -rf "$SLICE_BF16"
"$BUILD/hlwq" quantize "$TINY" "$TINY_INT4" --method rtn -q --force >&2
df -h "$WORK" | tail -1 >&2

for t in $THREADS; do
  echo
  echo "uptime before the $t-thread run: $(uptime)"
  "$BUILD/hlwq_bench_model" "$TINY" "$TINY_INT4" "$SLICE_INT4" --threads "$t" --repeats "$REPEATS" \
    --window "$WINDOW" --prompt "$WINDOW"
  echo "uptime after: $(uptime)"
done
