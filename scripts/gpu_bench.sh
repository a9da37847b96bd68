#!/usr/bin/env bash
# Full-size benchmarks on the GPU machine in one call: `hlwq synth` writes the Qwen3.6-35B-A3B CT-INT4 checkpoint
# (random weights, exact shapes) to local disk, then `hlwq bench --device cuda` measures it all-resident (decode at
# batch 1/4/16, prefill 512/4096) and with the expert cache: N slots per layer, and --gpu-memory budgets that
# emulate 24/16/12/8 GB cards (the whole plan — weights, KV, workspace, slots — must fit the budget; the CUDA
# context is not counted). Every run writes its JSON under $OUT; a table comes last. Runs go in order of value and
# each has a time limit, so a cut-short call still returns the first ones.
# Usage: [RUNS="resident_b1 …"] scripts/gpu_bench.sh [BIN_DIR]   (BIN_DIR holds hlwq and lib/, as for
# scripts/gpu_check.sh; RUNS picks some of the runs below by name)
set -uo pipefail
BIN=${1:-build}
OUT=${OUT:-/tmp/hlwq-gpu-bench}
D=${SYNTH_DIR:-/tmp/hlwq-synth}
mkdir -p "$OUT" "$D"
export LD_LIBRARY_PATH="$BIN/lib:${LD_LIBRARY_PATH:-}"
M="$D/qwen36-ct-int4"
commit=$(cat "$BIN/COMMIT" 2>/dev/null | tr '\n' ' ' || echo unknown)
echo "== synth (commit $commit)"
if [ ! -f "$M/config.json" ]; then
  /usr/bin/time -f "synth: %e s wall, %M KB peak RSS" "$BIN/hlwq" synth --like qwen3.6-35b-a3b "$M" --force \
    >"$OUT/synth.log" 2>&1 || { tail -5 "$OUT/synth.log"; exit 1; }
fi
tail -2 "$OUT/synth.log"
du -sh "$M"

run() {  # run NAME SECONDS ARGS...   (only the names in $RUNS when it is set)
  local name=$1 limit=$2
  shift 2
  [ -n "${RUNS:-}" ] && [[ " $RUNS " != *" $name "* ]] && return
  timeout "$limit" "$BIN/hlwq" bench "$M" --device cuda --json "$@" >"$OUT/$name.json" 2>"$OUT/$name.err" \
    || { echo "$name: failed or cut at ${limit}s"; tail -3 "$OUT/$name.err"; rm -f "$OUT/$name.json"; }
}
run resident_b1 150 --batch 1 --prompt-len 512 --gen-len 32 --repeats 3
run cache_n16_b1 120 --moe-expert-cache-size 16 --batch 1 --prompt-len 512 --gen-len 32 --repeats 3
run budget_12gb_b1 120 --gpu-memory 12GB --batch 1 --prompt-len 512 --gen-len 32 --repeats 3
run resident_b16 150 --batch 16 --prompt-len 4096 --gen-len 16 --repeats 2
run budget_8gb_b1 120 --gpu-memory 8GB --batch 1 --prompt-len 512 --gen-len 32 --repeats 3
run resident_b4 120 --batch 4 --prompt-len 512 --gen-len 32 --repeats 3
run budget_16gb_b1 120 --gpu-memory 16GB --batch 1 --prompt-len 512 --gen-len 32 --repeats 3
run cache_n8_b1 120 --moe-expert-cache-size 8 --batch 1 --prompt-len 512 --gen-len 32 --repeats 3
run budget_12gb_b4 120 --gpu-memory 12GB --batch 4 --prompt-len 512 --gen-len 32 --repeats 3

echo "== summary (commit $commit; JSON in $OUT)"
python3 - "$OUT" <<'PY'
import json, pathlib, sys
rows = []
for f in sorted(pathlib.Path(sys.argv[1]).glob("*.json")):
    if f.stat().st_size == 0: continue
    j, _ = json.JSONDecoder().raw_decode(f.read_text())
    c, p, d = j["ceilings"], j["prefill"], j["decode"]
    ec = d.get("expert_cache", {})
    print(f"{f.stem:<16} B={d['batch']:<2} decode {d['tok_s']:8.1f} tok/s ({d['step_ms']:6.2f} ms/step, SoL "
          f"{d['speed_of_light_tok_s']:7.1f}, {100*d['fraction_of_speed_of_light']:4.1f} %) | prefill {p['tokens']} "
          f"{p['tok_s']:8.1f} tok/s | " + (f"hits {100*ec['hit_rate']:.1f} %, PCIe {ec['pcie_bytes']/d['steps']/d['batch']/1e6:.1f} MB/tok | "
          if ec else "") + (f"prefill {100*p['fraction_of_compute_speed_of_light']:.1f} % of compute SoL | "
          if "fraction_of_compute_speed_of_light" in p else "") + f"read {c['read_gbs']:.0f} GB/s, H2D "
          f"{c.get('h2d_pinned_gbs', 0):.1f} GB/s, tensor cores {c.get('tc_bf16_tflops', 0):.0f} TFLOP/s")
    plan = j.get("memory_plan", "")
    if plan: print("   ", plan.replace("\n", "\n    "))
PY
