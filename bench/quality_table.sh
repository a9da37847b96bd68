#!/usr/bin/env bash
# Writes QUALITY.md from hlwq's own output: for the demo model (models/tiny-moe-dev) and every method — bf16, each
# compressed-tensors INT4 method, native HLWQ at 3/4/5 bits (least-squares scale, hlwq's default), the
# l2-norm variants the independent reference simulates, and calibrated (GPTQ) ct-int4 and HLWQ-4 — it quantizes
# with `hlwq quantize`, runs `hlwq eval kld` against the bf16 model on each text, times decode with hlwq_bench_model, and then
# bench/quality_report.py assembles the table (bits/weight, size, ppl, Δppl, KL, top-1, relative weight MSE,
# decode tok/s, the PyTorch reference beside each). Results are cached per method and text under $WORK/results,
# so a rerun redoes only what is missing (FORCE=1 redoes all). Then the ablation behind issue 13's "why"
# (docs/calibration.md): for the seed RTN and the calibrated rows, the model with only one kind of Linear quantized
# (hlwq_ablate; the others at their bf16 value), and its KL on $ABLATE_TEXTS.
#
# usage: bench/quality_table.sh [METHOD...]     (default: all; see METHODS below)
# env:   TEXTS="pydocs_heldout wiki_test"  MAX_WINDOWS=0 (0: whole text; N: first N windows of 512 tokens)
#        WINDOWS="wiki_test:100" per-text overrides of MAX_WINDOWS
#        BUILD=build  WORK=/tmp/hlwq-quality  OUT=QUALITY.md  SPEED=1 (0: skip decode timing)  SPEED_REPEATS=5  FORCE=0
#        CALIB=../shared/corpus/train.txt  CALIB_TOKENS=65536  CALIB_ARGS="--gptq-damp 0.1" (calibrated methods)
#        ABLATE=1 (0: skip the ablation)  ABLATE_TEXTS=pydocs_heldout  ABLATE_METHODS="rtn gptq hlwq-4-gptq"
# From a fresh clone: scripts/install-deps.sh; cmake -S . -B build -G Ninja; cmake --build build; then this.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
BUILD=${BUILD:-build}
SHARED=${HLWQ_SHARED:-$ROOT/../shared}
TEXTS=${TEXTS:-"pydocs_heldout wiki_test"}
MAX_WINDOWS=${MAX_WINDOWS:-0}
WORK=${WORK:-/tmp/hlwq-quality}
OUT=${OUT:-QUALITY.md}
SPEED=${SPEED:-1}
SPEED_REPEATS=${SPEED_REPEATS:-5}
FORCE=${FORCE:-0}
CALIB=${CALIB:-$SHARED/corpus/train.txt}
CALIB_TOKENS=${CALIB_TOKENS:-65536}
CALIB_ARGS=${CALIB_ARGS:-"--gptq-damp 0.1 --calib-device cpu"}  # damp: measured best of 0.01 and 0.1 (docs/calibration.md);
# the CPU engine collects the statistics on every machine, so the rows reproduce (GPU statistics: bench/calib_gpu.sh)
ABLATE=${ABLATE:-1}
ABLATE_TEXTS=${ABLATE_TEXTS:-pydocs_heldout}
ABLATE_METHODS=${ABLATE_METHODS:-"rtn gptq hlwq-4-gptq"}
# kind -> the module names hlwq_ablate keeps quantized (nomixers: every Linear but the mixers')
declare -A ABLATE_KINDS=([experts]='\.mlp\.experts\.' [shared]='\.mlp\.shared_expert\.'
                         [mixers]='\.(self_attn|linear_attn)\.' [attn]='\.self_attn\.' [gdn]='\.linear_attn\.'
                         [nomixers]='\.mlp\.(experts|shared_expert)\.')
for t in $TEXTS; do
  [ "$(realpath "$SHARED/corpus/$t.txt")" != "$(realpath "$CALIB")" ] || { echo "CALIB=$CALIB is an evaluated text" >&2; exit 1; }
done
BASE=models/tiny-moe-dev
# Order = run order: the rows the reference checks first. bf16's row comes from the base model's figures of the
# other runs (its KL to itself is 0 by definition), so bf16 only gets a decode timing.
# The calibrated methods (gptq*, hlwq-4-gptq: docs/calibration.md) calibrate on $CALIB, never on an evaluated text.
ALL=(hlwq-4 hlwq-3-l2 hlwq-5-l2 rtn mse gptq hlwq-4-gptq hlwq-4-gdn5-gptq gptq-gdn-bf16 mse-gdn-bf16 rtn-ct hlwq-cascade
     hlwq-cascade-lm5 hlwq-3 hlwq-5 hlwq-4-l2 bf16)
METHODS=("$@")
[ ${#METHODS[@]} -gt 0 ] || METHODS=("${ALL[@]}")
mkdir -p "$WORK/results" "$WORK/models" "$WORK/bin"
# The binaries are copied first, so rebuilding during a long run does not change them under it.
for t in hlwq hlwq_bench_model hlwq_dequantize hlwq_ablate; do
  [ -x "$BUILD/$t" ] || { echo "build $BUILD/$t first (cmake --build $BUILD --target $t)" >&2; exit 1; }
  cp "$BUILD/$t" "$WORK/bin/$t"
done
HLWQ=$WORK/bin/hlwq
windows_for() {  # TEXT -> its window cap
  local w
  for w in ${WINDOWS:-}; do [ "${w%%:*}" = "$1" ] && { echo "${w#*:}"; return; }; done
  echo "$MAX_WINDOWS"
}
log() { echo "[quality] $*" >&2; }

# quantize_args METHOD -> the `hlwq quantize` options
quantize_args() {
  case "$1" in
    gptq) echo "--format ct-int4 --calib $CALIB --calib-tokens $CALIB_TOKENS $CALIB_ARGS" ;;
    # CT INT4 with the Gated DeltaNet projections kept in bf16 (quantization_config.ignore), as llm-compressor's
    # own Qwen3-Next and Qwen3.5-MoE recipes do; calibrated, and calibration-free
    gptq-gdn-bf16) echo "--format ct-int4 --ignore .*\\.linear_attn\\. --calib $CALIB --calib-tokens $CALIB_TOKENS $CALIB_ARGS" ;;
    mse-gdn-bf16) echo "--format ct-int4 --method mse --ignore .*\\.linear_attn\\." ;;
    # calibrated HLWQ-4 with the Gated DeltaNet projections at 5 bits (stored as overrides, format version 2)
    hlwq-4-gdn5-gptq) echo "--format hlwq --bits 4 --bits-for .*\\.linear_attn\\.=5 --calib $CALIB --calib-tokens $CALIB_TOKENS $CALIB_ARGS" ;;
    hlwq-[2-8]-gptq) local b=${1#hlwq-}
                     echo "--format hlwq --bits ${b%-gptq} --calib $CALIB --calib-tokens $CALIB_TOKENS $CALIB_ARGS" ;;
    hlwq-[2-8]) echo "--format hlwq --bits ${1#hlwq-}" ;;
    hlwq-[2-8]-l2) local b=${1#hlwq-}; echo "--format hlwq --bits ${b%-l2} --hlwq-scale l2" ;;
    *) echo "--format ct-int4 --method $1" ;;
  esac
}

for m in "${METHODS[@]}"; do
  R="$WORK/results/$m"
  q="$WORK/models/$m"
  if [ "$m" = bf16 ]; then
    q=$BASE
  elif [ "$FORCE" = 1 ] || [ ! -f "$R.quantize.txt" ] || [ ! -d "$q" ]; then
    log "$m: quantize"
    # shellcheck disable=SC2046
    "$HLWQ" quantize -q --force "$BASE" "$q" $(quantize_args "$m") > "$R.quantize.txt"
  fi
  # The model the engine evaluates: the checkpoint itself; an HLWQ checkpoint the engine cannot load yet is
  # evaluated through its fp32 decode (hlwq_dequantize), and the table marks that row.
  evalq=$q
  path=native
  rm -f "$R.path"
  if [ "$m" != bf16 ] && ! "$HLWQ" eval ppl "$q" --text "$SHARED/corpus/pydocs_heldout.txt" --max-windows 1 --json \
        > /dev/null 2> "$WORK/load-error.txt"; then
    case "$m" in
      hlwq-*) log "$m: engine cannot load it ($(head -c 200 "$WORK/load-error.txt")); using its fp32 decode"
              evalq="$WORK/models/$m-decoded"
              [ -d "$evalq" ] && [ "$FORCE" != 1 ] || "$WORK/bin/hlwq_dequantize" "$q" "$evalq"
              path=decoded
              echo "decoded" > "$R.path" ;;
      *) cat "$WORK/load-error.txt" >&2; exit 1 ;;
    esac
  fi
  for t in $TEXTS; do
    [ "$m" = bf16 ] && continue
    f="$R.$t.json"
    mw=$(windows_for "$t")
    if [ "$FORCE" = 1 ] || [ ! -f "$f" ] || ! grep -q "\"max_windows\": $mw\b" "$f" ||
       ! grep -q "\"engine_path\": \"$path\"" "$f"; then
      log "$m: eval kld on $t (max windows $mw, $path)"
      "$HLWQ" eval kld "$evalq" --base "$BASE" --text "$SHARED/corpus/$t.txt" --max-windows "$mw" --json |
        python3 -c "import json,sys; j=json.load(sys.stdin); j['max_windows']=$mw; j['engine_path']='$path'; print(json.dumps(j, indent=1))" \
        > "$f.tmp"
      mv "$f.tmp" "$f"
    fi
  done
  if [ "$SPEED" = 1 ] && [ ! -f "$R.path" ] && { [ "$FORCE" = 1 ] || [ ! -f "$R.speed.txt" ]; }; then
    log "$m: decode speed"
    # A failed timing leaves no speed.txt (the table then shows "—") but says why, instead of dropping it silently.
    if ! "$WORK/bin/hlwq_bench_model" --prompt 64 --decode-tokens 32 --repeats "$SPEED_REPEATS" --window 64 \
         --stream-mib 256 "$q" > "$R.speed.tmp" 2> "$R.speed.err"; then
      log "$m: decode timing failed: $(tail -c 300 "$R.speed.err")"
      rm -f "$R.speed.tmp"
    else
      mv "$R.speed.tmp" "$R.speed.txt"
    fi
  fi
done
if [ "$ABLATE" = 1 ]; then
  for m in $ABLATE_METHODS; do
    [ -d "$WORK/models/$m" ] || continue  # a method not run yet has nothing to ablate
    for k in experts shared mixers attn gdn nomixers; do
      for t in $ABLATE_TEXTS; do
        f="$WORK/results/ablate.$m.$k.$t.json"
        mw=$(windows_for "$t")
        [ "$FORCE" != 1 ] && [ -f "$f" ] && grep -q "\"max_windows\": $mw\b" "$f" && continue
        log "$m: ablation, only $k quantized: eval kld on $t (max windows $mw)"
        a="$WORK/models/ablate-$m-$k"
        "$WORK/bin/hlwq_ablate" "$BASE" "$WORK/models/$m" "$a" "${ABLATE_KINDS[$k]}" >&2
        "$HLWQ" eval kld "$a" --base "$BASE" --text "$SHARED/corpus/$t.txt" --max-windows "$mw" --json |
          python3 -c "import json,sys; j=json.load(sys.stdin); j['max_windows']=$mw; j['ablate']='$k'; print(json.dumps(j, indent=1))" \
          > "$f.tmp"
        mv "$f.tmp" "$f"
        rm -rf "$a"
      done
    done
  done
fi
python3 bench/quality_report.py --work "$WORK" --base "$BASE" --shared "$SHARED" --texts "$TEXTS" \
  --methods "${ALL[*]}" --out "$OUT"
log "wrote $OUT"
