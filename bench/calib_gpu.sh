#!/usr/bin/env bash
# Calibrated quantization with the statistics collected on the GPU (hlwq quantize --calib --calib-device cuda)
# against the CPU engine, on the GPU machine (issue 13's benchmark). Called by scripts/gpu_check.sh (BENCH=calib or
# calib-qwen); writes logs under $OUT/calib and prints "calib ..." table rows.
#   demo: the demo model in QUALITY.md's gptq-gdn-bf16 setting (ct-int4, GDN projections kept bf16, 65,536 tokens of
#         train.txt, --gptq-damp 0.1) with the statistics on cuda, and its KL to bf16 on both evaluation texts (24
#         windows, the CPU engine, as QUALITY.md) beside the table's CPU-calibrated row; then the same on the cpu with
#         DEMO_CPU_TOKENS (16,384) tokens, for the time only.
#   qwen: a Qwen3.6-35B-A3B-shaped synthetic bf16 model of LAYERS layers (hlwq synth; random weights, so routing is
#         near-uniform and every expert sees tokens): calibration + quantization time on cuda (TOKENS_GPU tokens) and
#         on the cpu (TOKENS_CPU tokens; 0 skips it), from quantize's own summary line; the full model is projected
#         from these.
# Usage: bench/calib_gpu.sh demo|qwen BIN   (BIN: the directory holding hlwq); needs $HLWQ_SHARED/corpus with
#        train.txt and wiki_test.txt (or their .xz) and pydocs_heldout.txt.
set -uo pipefail
part=$1
BIN=$2
OUT=${OUT:-/tmp/hlwq-gpu-check}
C="$OUT/calib"
S="$OUT/scratch/calib"
mkdir -p "$C" "$S"
rm -f "$C/table.txt"
corpus() {  # path of corpus text $1 (decompressed into scratch when it travelled as .xz)
  local f="$HLWQ_SHARED/corpus/$1.txt"
  if [ ! -f "$f" ] && [ -f "$f.xz" ]; then
    [ -f "$S/$1.txt" ] || xz -dc "$f.xz" >"$S/$1.txt"
    f="$S/$1.txt"
  fi
  echo "$f"
}
status=0
summary_of() {  # the calibration summary line of a quantize log
  grep -m1 "^calibration:" "$1" | cut -c1-170
}

case "$part" in
demo)
  train=$(corpus train)
  # statistics on cuda with the table's 65,536 tokens (then its KL); on the cpu with DEMO_CPU_TOKENS for the time
  for run in "cuda 65536" "cpu ${DEMO_CPU_TOKENS:-16384}"; do
    set -- $run
    q="$S/demo-$1"
    rm -rf "$q"
    /usr/bin/time -f "wall %e s, max RSS %M KB" "$BIN/hlwq" quantize models/tiny-moe-dev "$q" --format ct-int4 \
      --ignore '.*\.linear_attn\.' --calib "$train" --calib-tokens "$2" --gptq-damp 0.1 --calib-device "$1" -q \
      >"$C/demo-$1.quantize.log" 2>&1 || { status=1; tail -5 "$C/demo-$1.quantize.log"; continue; }
    kl="(KL not measured)"
    if [ "$1" = cuda ]; then
      kl="KL pydocs/wiki"
      for t in pydocs_heldout wiki_test; do
        "$BIN/hlwq" eval kld "$q" --base models/tiny-moe-dev --text "$(corpus $t)" --max-windows 24 --device cpu \
          --json >"$C/demo-$1.$t.json" 2>"$C/demo-$1.$t.err" || { status=1; tail -3 "$C/demo-$1.$t.err"; }
        kl="$kl $(python3 -c "import json; print(f\"{json.load(open('$C/demo-$1.$t.json'))['kld']:.4f}\")" 2>/dev/null || echo —)"
      done
    fi
    echo "calib demo gptq-gdn-bf16, statistics on $1: $kl | $(summary_of "$C/demo-$1.quantize.log") | $(tail -1 "$C/demo-$1.quantize.log")" >>"$C/table.txt"
  done
  cat "$C/table.txt"
  ;;
qwen)
  layers=${LAYERS:-1}
  m="$S/qwen36-${layers}l"
  train=$(corpus train)
  "$BIN/hlwq" synth "$m" --like qwen3.6-35b-a3b --layers "$layers" --format bf16 --tokenizer models/tiny-moe-dev \
    --force >"$C/synth.log" 2>&1 || { status=1; tail -5 "$C/synth.log"; }
  for run in "cuda ${TOKENS_GPU:-16384}" "cpu ${TOKENS_CPU:-2048}"; do
    set -- $run
    [ "$2" -gt 0 ] || continue  # TOKENS_CPU=0: the GPU run only
    q="$S/qwen-$1"
    rm -rf "$q"
    /usr/bin/time -f "wall %e s, max RSS %M KB" "$BIN/hlwq" quantize "$m" "$q" --format ct-int4 --calib "$train" \
      --calib-tokens "$2" --gptq-damp 0.1 --calib-device "$1" -q >"$C/qwen-$1.quantize.log" 2>&1 ||
      { status=1; tail -5 "$C/qwen-$1.quantize.log"; }
    echo "calib qwen3.6-shaped ${layers} layer(s), statistics on $1: $(summary_of "$C/qwen-$1.quantize.log") | $(tail -1 "$C/qwen-$1.quantize.log")" >>"$C/table.txt"
    rm -rf "$q"
  done
  cat "$C/table.txt"
  grep -h -E "^(quantized|GPTQ|wrote)" "$C"/qwen-*.quantize.log | head -8
  rm -rf "$m"
  ;;
*) echo "usage: bench/calib_gpu.sh demo|qwen BIN" >&2; exit 2 ;;
esac
exit $status
