#!/usr/bin/env bash
# GPU check in one call, for the GPU machine: runs the CUDA differential tests (every op against the CPU backend)
# and the whole-model tests (goldens, CPU engine, graphs), a memcheck pass over the quick ones, the demo model's
# greedy output on both devices, the kernel benchmarks (hlwq vs cuBLAS bf16 vs the copy ceiling) and the synthetic full-size forward
# (decode B = 1/4/16 as CUDA graphs, prefill 512/4096), writes every log under $OUT
# (default /tmp/hlwq-gpu-check) and prints a short table last.
# Usage: scripts/gpu_check.sh [BIN_DIR]
#   BIN_DIR holds hlwq, test_cuda, test_cuda_model, hlwq_bench_cuda_{kernels,forward,cublas} and optionally lib/
#   (shared libraries to carry, e.g. libfmt.so.9); default: a build directory made with -DHLWQ_CUDA=ON (build/).
#   Binaries built on another machine find the repository through $HLWQ_SOURCE (set here to the current
#   directory, which must be the repository root) and the shared fixtures through $HLWQ_SHARED (default:
#   .dev-shared when present, a copy of the ../shared files the tests need).
#   BENCH=all (default) | forward (only the synthetic full-size forward) | none | calib (calibrated quantization of
#   the demo model with GPU statistics, bench/calib_gpu.sh) | calib-qwen (its Qwen3.6-shaped timing). TESTS=0 skips
#   the tests and sanitizers.
# Exit status: non-zero when a test failed or a benchmark could not run.
set -uo pipefail
BIN=${1:-build}
[ -x "$BIN/test_cuda" ] || { [ -x "$BIN/tests/cuda/test_cuda" ] && ln -sf tests/cuda/test_cuda "$BIN/test_cuda"; }
[ -x "$BIN/test_cuda_model" ] || { [ -x "$BIN/tests/cuda/test_cuda_model" ] && ln -sf tests/cuda/test_cuda_model "$BIN/test_cuda_model"; }
OUT=${OUT:-/tmp/hlwq-gpu-check}
mkdir -p "$OUT" "$OUT/scratch"
export HLWQ_SOURCE="$PWD" HLWQ_BINARY="$OUT/scratch"
[ -z "${HLWQ_SHARED:-}" ] && [ -d .dev-shared ] && export HLWQ_SHARED="$PWD/.dev-shared"
cublas_dir=$(dirname "$(find /usr/local/cuda*/ /opt /usr/lib -name 'libcublas.so.1*' 2>/dev/null | head -1)" 2>/dev/null)
export LD_LIBRARY_PATH="$BIN/lib:${cublas_dir:-/usr/local/cuda/lib64}:${LD_LIBRARY_PATH:-}"
status=0

nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,temperature.gpu,power.draw \
  --format=csv >"$OUT/gpu.txt" 2>&1
git_commit=$(cat "$BIN/COMMIT" 2>/dev/null || git rev-parse --short HEAD 2>/dev/null || echo unknown)

touch "$OUT/test_cuda.log" "$OUT/test_cuda_model.log" "$OUT/ppl_placements.log"
if [ "${TESTS:-1}" = 1 ]; then
echo "== tests"
"$BIN/test_cuda" --gtest_output="xml:$OUT/test_cuda.xml" >"$OUT/test_cuda.log" 2>&1 || status=1
grep -E "^\[  (FAILED|PASSED|SKIPPED) |Failure|error|rel_err|Expected|Which is" "$OUT/test_cuda.log" | head -60
"$BIN/test_cuda_model" --gtest_output="xml:$OUT/test_cuda_model.xml" >"$OUT/test_cuda_model.log" 2>&1 || status=1
grep -E "^\[  (FAILED|SKIPPED) |^\[ (err|greedy|ppl) |Failure|Expected|Which is" "$OUT/test_cuda_model.log" | head -60

echo "== the demo model, greedy, on both devices"
for d in cuda cpu; do
  "$BIN/hlwq" run models/tiny-moe-dev -p "The Python interpreter" -n 32 --temp 0 --device $d \
    >"$OUT/run_$d.log" 2>&1 || status=1
  tail -3 "$OUT/run_$d.log"
done

echo "== the demo model's perplexity under each placement of its experts (prefill: multi-token expert steps)"
# Each line must agree with the others within noise (test_cuda_model bounds CUDA vs CPU at 0.5 %); a wrong expert
# for some tokens moves it by far more.
ppl_text=${HLWQ_SHARED:-../shared}/corpus/pydocs_heldout.txt
for cfg in "--device cpu" "--device cuda" "--device cuda --moe-expert-cache-size 1" \
    "--device cuda --moe-expert-cache-size 1 --cpu-experts all" "--device cuda --moe-expert-cache-size 3 --cpu-experts all" \
    "--device cuda --n-cpu-moe 6" "--device cuda --moe-expert-cache-size 1 --cpu-experts auto"; do
  # shellcheck disable=SC2086
  p=$("$BIN/hlwq" eval ppl -m models/tiny-moe-dev -f "$ppl_text" --max-windows 4 -q $cfg 2>&1 | grep -m1 '^ppl' || echo "failed")
  echo "ppl [$cfg]: $p" | tee -a "$OUT/ppl_placements.log"
done

echo "== memcheck (quick tests)"
if command -v compute-sanitizer >/dev/null; then
  timeout 240 compute-sanitizer --tool memcheck --error-exitcode 9 "$BIN/test_cuda" \
    --gtest_filter='CudaNorm.*:CudaEmbedding.*:CudaMoe.Router*:CudaGdn.TwoSequences*:CudaGdn.ChunkedAndRecurrent*:CudaSampling.*:CudaGemm.DetectsWrongWeights:CudaExpertCache.*:CudaInputStats.*' \
    >"$OUT/memcheck.log" 2>&1
  mc=$?
  tail -3 "$OUT/memcheck.log"
  [ $mc -eq 0 ] || { echo "memcheck exit $mc"; status=1; }
  # warnings fail too (hazards racecheck judges benign, e.g. a warp's reads and writes ordered only by shuffles):
  # its summary line counts every hazard displayed
  timeout 300 compute-sanitizer --tool racecheck --error-exitcode 9 "$BIN/test_cuda" \
    --gtest_filter='CudaGdn.TwoSequences*:CudaGdn.ChunkedAndRecurrent*:CudaNorm.*:CudaMoe.Router*:CudaSampling.Argmax*:CudaExpertCache.*:CudaHlwq.Codebook*' >"$OUT/racecheck.log" 2>&1
  rc_race=$?
  hazards=$(grep -o "[0-9]* hazards displayed" "$OUT/racecheck.log" | awk '{ s += $1 } END { print s + 0 }')
  [ "$rc_race" -ne 0 ] || [ "$hazards" -eq 0 ] || rc_race=8
  tail -1 "$OUT/racecheck.log"
  echo "racecheck: $hazards hazards (errors and warnings)"
  [ $rc_race -eq 0 ] || { echo "racecheck exit $rc_race"; status=1; mc="$mc/race $rc_race"; }
  timeout 240 compute-sanitizer --tool memcheck --error-exitcode 9 "$BIN/test_cuda_model" \
    --gtest_filter='CudaModel.GraphReplay*:CudaModel.GoldensOfTheBundled*:CudaModel.DeviceTokenChoice*:CudaOffloadTrace.LayerStreaming*:CudaCalibration.DeviceSums*' \
    >"$OUT/memcheck_model.log" 2>&1
  mm=$?
  tail -3 "$OUT/memcheck_model.log"
  [ $mm -eq 0 ] || { echo "memcheck (model) exit $mm"; status=1; mc="$mc/$mm"; }
else
  mc=na
fi
else
  mc="not run (TESTS=0)"
fi

echo "== benchmarks (BENCH=${BENCH:-all})"
touch "$OUT/bench_kernels.log" "$OUT/bench_cublas.log" "$OUT/bench_forward.log" "$OUT/bench_hlwq.log"
if [ "${BENCH:-all}" = all ]; then
  "$BIN/hlwq_bench_cuda_kernels" >"$OUT/bench_kernels.log" 2>&1 || { status=1; tail -5 "$OUT/bench_kernels.log"; }
  "$BIN/hlwq_bench_cuda_cublas" >"$OUT/bench_cublas.log" 2>&1 || { echo "cublas bench failed:"; tail -5 "$OUT/bench_cublas.log"; }
  if [ -x "$BIN/hlwq_bench_cuda_hlwq" ]; then
    "$BIN/hlwq_bench_cuda_hlwq" >"$OUT/bench_hlwq.log" 2>&1 || { status=1; tail -5 "$OUT/bench_hlwq.log"; }
  fi
fi
case "${BENCH:-all}" in  # calibrated quantization with GPU statistics (bench/calib_gpu.sh)
  calib) bash bench/calib_gpu.sh demo "$BIN" || status=1 ;;
  calib-qwen) bash bench/calib_gpu.sh qwen "$BIN" || status=1 ;;
esac
if [ "${BENCH:-all}" = all ] || [ "${BENCH:-all}" = forward ]; then
  "$BIN/hlwq_bench_cuda_forward" >"$OUT/bench_forward.log" 2>&1 || { status=1; tail -5 "$OUT/bench_forward.log"; }
fi

echo
echo "== summary (commit $git_commit; logs in $OUT)"
cat "$OUT/gpu.txt"
head -1 "$OUT/bench_kernels.log"
grep -h -E "^\[  (PASSED|FAILED) " "$OUT/test_cuda.log" "$OUT/test_cuda_model.log" | sort | uniq -c | head -20
grep -h -E "^\[ (greedy|ppl) " "$OUT/test_cuda_model.log"
cut -c1-150 "$OUT/ppl_placements.log"
echo "memcheck: exit $mc"
grep -h "^row" "$OUT/bench_kernels.log" "$OUT/bench_cublas.log" "$OUT/bench_hlwq.log" | sed 's/^row //'
grep -h "8192^3" "$OUT/bench_cublas.log"
grep -h -E "^ceilings|^model|^row" "$OUT/bench_forward.log" | sed 's/^row //'
[ -f "$OUT/calib/table.txt" ] && cat "$OUT/calib/table.txt"
# the device tool returns a few files: the logs travel as one archive
tar czf "$OUT.logs.tgz" -C "$OUT" --exclude=scratch . && rm -rf "$OUT" && mkdir -p "$OUT" && mv "$OUT.logs.tgz" "$OUT/logs.tgz"
exit $status
