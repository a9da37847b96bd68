#!/usr/bin/env bash
# A/B of two builds on the GPU machine in one call: the kernel benchmark (hlwq_bench_cuda_kernels), the synthetic
# full-size forward (hlwq_bench_cuda_forward) and a few `hlwq bench` cells of scripts/gpu_bench.sh, each run by
# build A, then by build B, then by A again (A B A: drift of the machine shows as a difference between the two A
# runs), with the ceilings of every run in its log. Logs under $OUT/{a,b,a2}_*; a short table last.
# Usage: [OUT=dir] [TESTS=1] [CELLS="m_model_resident m_trace_gb8"] [PARTS="kernels forward cells"]
#        scripts/gpu_ab.sh A_DIR B_DIR
#   A_DIR, B_DIR: as gpu_check.sh's BIN_DIR (hlwq, hlwq_bench_cuda_{kernels,forward}, COMMIT, lib/).
#   TESTS=1 first runs gpu_check.sh's tests on B (BENCH=none, logs under $OUT/check).
set -uo pipefail
A=$1 B=$2
OUT=${OUT:-/tmp/hlwq-gpu-ab}
CELLS=${CELLS:-"m_model_resident m_trace_gb8 m_trace_gb12"}
PARTS=${PARTS:-"kernels forward cells"}
mkdir -p "$OUT"
status=0
if [ "${TESTS:-0}" = 1 ]; then
  OUT="$OUT/check" BENCH=none bash scripts/gpu_check.sh "$B" >"$OUT/check.log" 2>&1 || status=1
  tail -25 "$OUT/check.log"
fi
for part in $PARTS; do
  for tag in a b a2; do
    [ "$tag" = a2 ] && [ "${A2:-1}" = 0 ] && continue
    bin=$A
    [ "$tag" = b ] && bin=$B
    echo "== $part $tag ($(cat "$bin/COMMIT" 2>/dev/null | head -1))"
    case $part in
      kernels) LD_LIBRARY_PATH="$bin/lib:${LD_LIBRARY_PATH:-}" "$bin/hlwq_bench_cuda_kernels" >"$OUT/${tag}_kernels.log" 2>&1 \
                 || { status=1; tail -3 "$OUT/${tag}_kernels.log"; } ;;
      forward) LD_LIBRARY_PATH="$bin/lib:${LD_LIBRARY_PATH:-}" "$bin/hlwq_bench_cuda_forward" >"$OUT/${tag}_forward.log" 2>&1 \
                 || { status=1; tail -3 "$OUT/${tag}_forward.log"; } ;;
      cells) [ "$tag" = a2 ] && continue  # the model load dominates a cell; A twice would not fit one call
             RUNS="$CELLS" MATRIX_ONLY=1 OUT="$OUT/${tag}_cells" bash scripts/gpu_bench.sh "$bin" >"$OUT/${tag}_cells.log" 2>&1 \
               || status=1 ;;
    esac
  done
done

echo "== A: $(cat "$A/COMMIT" 2>/dev/null | head -1)   B: $(cat "$B/COMMIT" 2>/dev/null | head -1)"
for tag in a b a2; do
  [ -s "$OUT/${tag}_kernels.log" ] || continue
  echo "-- kernels $tag: $(head -1 "$OUT/${tag}_kernels.log" | sed 's/.*SMs, //')"
  grep -E "^row (moe|int4 gemm)" "$OUT/${tag}_kernels.log" | sed 's/^row //' | cut -c1-100
done
for tag in a b a2; do
  [ -s "$OUT/${tag}_forward.log" ] || continue
  echo "-- forward $tag: $(grep -m1 '^ceilings' "$OUT/${tag}_forward.log")"
  grep -E "^row (decode|prefill)|^row   op B=1 " "$OUT/${tag}_forward.log" | sed 's/^row //' | cut -c1-130
done
for tag in a b; do
  [ -d "$OUT/${tag}_cells" ] || continue
  echo "-- cells $tag"
  sed -n '/== offload matrix/,$p' "$OUT/${tag}_cells.log"
done
exit $status
