#!/usr/bin/env bash
# Quantization throughput benchmark (not a test). Builds hlwq and hlwq_make_synthetic, writes synthetic bf16
# checkpoints with Qwen3.6-35B-A3B's exact tensor shapes but few layers (once; reused while present), then
# times `hlwq quantize` per method and thread count and prints a markdown table: wall seconds, GB/s of bf16
# input, the time the full 40-layer model would take, peak RSS, relative weight MSE, load before and after.
# Beside it: the machine, the commit, and I/O ceilings measured in the same run with dd on the same files.
#
# Extrapolation. A run costs t = a + b·Q: a fixed part (copying embed_tokens and lm_head, 2.03 GB that stay
# bf16, plus start-up and the final fsync) and a part proportional to the quantized bytes Q. The synthetic
# input is 38% fixed part, the real model 3%, so "69.3 GB at this run's GB/s" would be wrong; a is measured
# instead as 2·t(1 layer) − t(2 layers) with rtn at all threads (best of REPEATS), and the full model's time is
# a + (t − a)·Q_full/Q_synthetic. Both the naive and this estimate are printed.
# Each output is removed after its run, so the disk holds the two checkpoints plus one output at a time.
#
# Environment (all optional):
#   HLWQ_BENCH_DIR  work dir (default /tmp/hlwq-bench)       BUILD_DIR  build dir (default <repo>/build-bench)
#   LAYERS          layers of the measured checkpoint (default 2: one linear_attention + one full_attention)
#   METHODS         default "rtn mse hlwq-cascade"           THREADS    default "1 $(nproc)"
#   SKIP            runs to skip, "method:threads" separated by spaces (e.g. "mse:1")
#   REPEATS         repeats of each calibration run (default 2)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${HLWQ_BENCH_DIR:-/tmp/hlwq-bench}
BUILD=${BUILD_DIR:-$ROOT/build-bench}
LAYERS=${LAYERS:-2}
METHODS=${METHODS:-"rtn mse hlwq-cascade"}
NPROC=$(nproc)
THREADS=${THREADS:-"1 $NPROC"}
SKIP=${SKIP:-}
REPEATS=${REPEATS:-2}
DST=$WORK/out
LOGS=$WORK/logs
mkdir -p "$WORK" "$LOGS"

log() { echo "[bench] $*" >&2; }
now() { date +%s.%N; }
load1() { cut -d' ' -f1 /proc/loadavg; }
calc() { awk "BEGIN { printf \"$1\", $2 }"; }  # calc FORMAT EXPR
human_s() {
  awk -v s="$1" 'BEGIN { if (s < 120) printf "%.0f s", s; else if (s < 7200) printf "%.1f min", s / 60;
                         else printf "%.2f h", s / 3600 }'
}

if [[ ! -f $BUILD/build.ninja ]]; then
  cmake -S "$ROOT" -B "$BUILD" -G Ninja -DHLWQ_BUILD_TESTS=OFF >&2
fi
cmake --build "$BUILD" --target hlwq hlwq_make_synthetic >&2
HLWQ=$BUILD/hlwq
SYN=$BUILD/hlwq_make_synthetic

# checkpoint L: writes $WORK/synthetic-<L>l unless present; prints "BYTES QUANTIZABLE" of it.
checkpoint() {
  local l=$1 dir=$WORK/synthetic-$1l
  if [[ ! -f $dir/config.json ]]; then
    log "writing synthetic checkpoint $dir ($l layers)"
    "$SYN" "$dir" --layers "$l" --force >&2
  fi
  "$SYN" "$dir" --layers "$l" --sizes-only | awk '/^checkpoint_bytes/ { print $2, $4 }'
}
read -r FULL_BYTES FULL_Q < <("$SYN" "$WORK/unused" --sizes-only | awk '/^full_model_bytes/ { print $2, $4 }')
FULL_GB=$(calc "%.1f" "$FULL_BYTES / 1e9")
read -r CK_BYTES CK_Q < <(checkpoint "$LAYERS")
SRC=$WORK/synthetic-${LAYERS}l
CAL_L=$((LAYERS > 1 ? LAYERS - 1 : 2))  # the other layer count of the calibration pair
read -r _ CAL_Q < <(checkpoint "$CAL_L")
CAL_SRC=$WORK/synthetic-${CAL_L}l

# quantize SRC METHOD THREADS TAG: runs hlwq, prints "WALL_SECONDS", leaves the summary in $LOGS/TAG.txt.
quantize() {
  rm -rf "$DST"
  local t0 t1
  t0=$(now)
  "$HLWQ" quantize "$1" "$DST" --method "$2" --threads "$3" -q --force >"$LOGS/$4.txt"
  t1=$(now)
  rm -rf "$DST"
  calc "%.2f" "$t1 - $t0"
}

# I/O ceilings on the same files and disk. Cached reads come from the page cache (the synthetic checkpoint
# fits in RAM; it was just written or read); direct I/O bypasses it, as a 70 GB model on a small-RAM machine
# mostly would. The copy (cached read -> new file, fsync) is what hlwq does for the tensors it keeps.
dd_rate() {  # dd args... -> GB/s from dd's summary line "N bytes (...) copied, S s, R GB/s"
  LC_ALL=C dd "$@" 2>&1 | awk '/copied/ { printf "%.2f", $1 / $(NF-3) / 1e9 }'
}
SHARD=$(ls -S "$SRC"/*.safetensors | head -n1)  # the largest shard
cat "$SRC"/*.safetensors >/dev/null
R_CACHED=$(dd_rate if="$SHARD" of=/dev/null bs=64M count=32)
R_DIRECT=$(dd_rate if="$SHARD" of=/dev/null bs=64M count=32 iflag=direct)
W_COPY=$(dd_rate if="$SHARD" of="$WORK/copy.tmp" bs=64M count=32 conv=fsync)
rm -f "$WORK/copy.tmp"
log "ceilings: cached read $R_CACHED GB/s, direct read $R_DIRECT GB/s, copy+fsync $W_COPY GB/s"

# Calibration of the fixed part a (see the top of this file).
best() { tr ' ' '\n' | sort -g | head -n1; }
runs_l=() runs_c=()
for ((i = 0; i < REPEATS; i++)); do
  cat "$SRC"/*.safetensors "$CAL_SRC"/*.safetensors >/dev/null
  runs_l+=("$(quantize "$SRC" rtn "$NPROC" "cal-${LAYERS}l-$i")")
  runs_c+=("$(quantize "$CAL_SRC" rtn "$NPROC" "cal-${CAL_L}l-$i")")
done
T_L=$(echo "${runs_l[*]}" | best)
T_C=$(echo "${runs_c[*]}" | best)
# t = a + b·Q through the two points.
B_PER_Q=$(calc "%.6e" "($T_L - $T_C) / ($CK_Q - $CAL_Q)")
A_FIXED=$(calc "%.2f" "$T_L - $B_PER_Q * $CK_Q")
log "calibration (rtn, $NPROC threads): ${LAYERS} layers ${runs_l[*]} s, ${CAL_L} layers ${runs_c[*]} s -> fixed part a = $A_FIXED s"

ROWS=()
for m in $METHODS; do
  for t in $THREADS; do
    if [[ " $SKIP " == *" $m:$t "* ]]; then
      ROWS+=("| $m | $t | skipped | | | | | | | |")
      continue
    fi
    cat "$SRC"/*.safetensors >/dev/null
    l0=$(load1)
    log "quantize --method $m --threads $t (load $l0)"
    wall=$(quantize "$SRC" "$m" "$t" "$m-t$t")
    l1=$(load1)
    # Summary lines: "time 8.1s (0.46 GB/s of input), peak RSS 118.47 MB"; the "total" row ends with rel. MSE.
    own=$(sed -nE 's/^time .* \(([0-9.]+) GB\/s of input\).*/\1/p' "$LOGS/$m-t$t.txt")
    rss=$(sed -nE 's/^time .*peak RSS (.*)$/\1/p' "$LOGS/$m-t$t.txt")
    mse=$(awk '$1 == "total" { print $NF }' "$LOGS/$m-t$t.txt")
    rate=$(calc "%.3f" "$CK_BYTES / $wall / 1e9")
    naive=$(calc "%.1f" "$FULL_BYTES / ($rate * 1e9)")
    full=$(calc "%.1f" "$A_FIXED + ($wall - $A_FIXED) * $FULL_Q / $CK_Q")
    qrate=$(calc "%.3f" "$CK_Q / ($wall - $A_FIXED) / 1e9")
    log "  $wall s, $rate GB/s, RSS $rss, rel. MSE $mse, full model ~$(human_s "$full")"
    ROWS+=("| $m | $t | $wall | $rate | $own | $qrate | $(human_s "$naive") | **$(human_s "$full")** | $rss | $mse | $l0 → $l1 |")
  done
done

COMMIT=$(git -C "$ROOT" rev-parse --short HEAD)
DIRTY=$(git -C "$ROOT" status --porcelain --untracked-files=no | wc -l)
CPU=$(LC_ALL=C lscpu | awk -F: '/Model name/ { gsub(/^ +/, "", $2); print $2; exit }')
MEM=$(awk '/MemTotal/ { printf "%.1f GB", $2 * 1024 / 1e9 }' /proc/meminfo)
cat <<EOF
Machine: $CPU, $NPROC cores, $MEM RAM; commit $COMMIT$( ((DIRTY)) && echo " (+$DIRTY modified tracked files)"); $(date -u '+%F %H:%M UTC').
Input: synthetic bf16 checkpoint, $LAYERS layers of Qwen3.6-35B-A3B's shapes, $(calc "%.2f" "$CK_BYTES / 1e9") GB ($(calc "%.2f" "$CK_Q / 1e9") GB quantized, the rest kept bf16), in the page cache.
Full model (40 layers, text only): $(calc "%.2f" "$FULL_BYTES / 1e9") GB bf16, $(calc "%.2f" "$FULL_Q / 1e9") GB of it quantized.
I/O ceilings (dd, 64 MiB blocks, 2.1 GB of a shard): cached read $R_CACHED GB/s; direct (uncached) read $R_DIRECT GB/s; cached read -> file + fsync $W_COPY GB/s.
Fixed part a = $A_FIXED s (rtn, $NPROC threads, best of $REPEATS: $LAYERS layers ${T_L} s, $CAL_L layers ${T_C} s).

| method | threads | wall s | GB/s of bf16 input | hlwq's own GB/s | GB/s of quantized bytes (t − a) | $FULL_GB GB at this GB/s | full model, a + (t − a)·Q_full/Q | peak RSS | rel. MSE | load (1 min) before → after |
|---|---|---|---|---|---|---|---|---|---|---|
EOF
printf '%s\n' "${ROWS[@]}"
