#!/usr/bin/env bash
# Full-size benchmarks on the GPU machine in one call: `hlwq synth` writes the Qwen3.6-35B-A3B CT-INT4 checkpoint
# (random weights, exact shapes) to local disk, then `hlwq bench --device cuda` measures it all-resident (decode at
# batch 1/4/16, prefill 512/4096) and with the expert cache: N slots per layer, and --gpu-memory budgets that
# emulate 24/16/12/8 GB cards (the whole plan — weights, KV, workspace, slots — must fit the budget; the CUDA
# context is not counted). Every run writes its JSON under $OUT; a table comes last. Runs go in order of value and
# each has a time limit, so a cut-short call still returns the first ones.
# The offload matrix (issue 8, runs named m_<routing>_<config>): decode B=1 (G=32) and prefill 512 and 4096 in one
# process per cell, for budgets 8/12/16/24 GB and N = 8/16/32/64 slots, under the model's own routing and under a
# routing trace (bench --route-trace-gen: fitted to llama.cpp PR #27861's LRU hit rates, see src/moe/route_trace.h;
# trace cells run without prefetch — the router's predictions say nothing about a trace's experts — model cells run
# the default, --moe-prefetch auto, beside A/B cells with it forced off and on, and one trace cell at 12 GB with it
# on shows its pure cost there; two cells with --cpu-experts auto at 8 GB and 8 slots against the cache alone;
# streaming A/B cells and a prefill-length sweep, every batch streamed against none, place the streaming threshold).
# To fit ~8 minutes of device time each cell runs --warmup 1 --repeats 1 (one timed run after a warm-up that also
# records the decode graph and warms the cache): a model load is most of a cell's time (estimated 15–25 s of ~30 s,
# not yet measured), so the 18 cells' loads are the floor. MATRIX_ONLY=1 skips the resident and older cache runs.
# Usage: [RUNS="resident_b1 …"] [MATRIX_ONLY=1] scripts/gpu_bench.sh [BIN_DIR]   (BIN_DIR holds hlwq and lib/, as
# for scripts/gpu_check.sh; RUNS picks some of the runs below by name, e.g. RUNS="m_trace_gb12 m_model_gb12")
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
run_matrix() {  # the offload matrix (see the header); the trace first: it is the realistic routing
  local TR="$D/qwen36-b1.trace"
  if [ ! -f "$TR" ]; then
    "$BIN/hlwq" bench "$M" --route-trace-gen "$TR" --trace-steps 8192 --trace-seqs 1 >"$OUT/trace_gen.log" 2>&1 \
      || { echo "trace generation failed"; tail -3 "$OUT/trace_gen.log"; return; }
  fi
  cat "$OUT/trace_gen.log" 2>/dev/null
  local common=(--batch 1 --prompt-len 512 --more-prompt-lens 4096 --gen-len 32 --warmup 1 --repeats 1)
  # every expert on the GPU and no cache: the reference step (llama.cpp's bound in BENCHMARKS.md is built from it)
  run m_model_resident 150 "${common[@]}"  # uploading every expert takes longer than a cell's 75 s
  local cfg
  cell_cfg() {  # cfg ← the options of a cell name: gbN a --gpu-memory budget, nN an expert cache of N slots
    case $1 in
      gb*) cfg=(--gpu-memory "${1#gb}GB") ;;
      n*) cfg=(--moe-expert-cache-size "${1#n}") ;;
    esac
  }
  for cell in gb12 gb8 gb16 gb24 n32 n64 n16 n8; do
    cell_cfg "$cell"
    # a trace's experts are not what the model's router predicts, so prefetch would only add copies: off
    run "m_trace_$cell" 75 "${cfg[@]}" "${common[@]}" --route-trace "$TR" --moe-prefetch off
    run "m_model_$cell" 75 "${cfg[@]}" "${common[@]}"  # --moe-prefetch auto: the faster of the two below
  done
  # --cpu-experts auto against the cache alone (m_trace_gb8, m_trace_n8): misses split between PCIe and the CPU by
  # the costs measured at load, which the plan prints (cpu_split.h)
  run m_trace_gb8_cpuauto 75 --gpu-memory 8GB "${common[@]}" --route-trace "$TR" --moe-prefetch off --cpu-experts auto
  run m_trace_n8_cpuauto 75 --moe-expert-cache-size 8 "${common[@]}" --route-trace "$TR" --moe-prefetch off \
    --cpu-experts auto
  # prefetch A/B: forced off and on under the model's routing at every budget and cache size (auto, the model
  # cells above, should match the faster), its cost under the trace
  for cell in gb12 gb8 gb16 n32 n64 n16 n8; do
    cell_cfg "$cell"
    run "m_model_${cell}_noprefetch" 75 "${cfg[@]}" "${common[@]}" --moe-prefetch off
    run "m_model_${cell}_prefetch" 75 "${cfg[@]}" "${common[@]}" --moe-prefetch on
  done
  run m_trace_gb12_prefetch 75 --gpu-memory 12GB "${common[@]}" --route-trace "$TR" --moe-prefetch on
  # whole-layer streaming of prefill (moe_stream.cuh) A/B: off at 8 slots and at 8 GB; and where it starts to pay,
  # for the default threshold: prefill of 64..1024 tokens at 8 slots, every batch streamed against none
  run m_trace_n8_nostream 75 --moe-expert-cache-size 8 "${common[@]}" --route-trace "$TR" --moe-prefetch off \
    --moe-stream-min-tokens 0
  run m_trace_gb8_nostream 75 --gpu-memory 8GB "${common[@]}" --route-trace "$TR" --moe-prefetch off \
    --moe-stream-min-tokens 0
  run m_trace_gb12_nostream 75 --gpu-memory 12GB "${common[@]}" --route-trace "$TR" --moe-prefetch off \
    --moe-stream-min-tokens 0
  local sweep=(--moe-expert-cache-size 8 --batch 1 --prompt-len 64 --more-prompt-lens 128,256,512,1024 --gen-len 8
               --warmup 1 --repeats 1 --route-trace "$TR" --moe-prefetch off)
  run m_sweep_stream_all 75 "${sweep[@]}" --moe-stream-min-tokens 1
  run m_sweep_stream_none 75 "${sweep[@]}" --moe-stream-min-tokens 0
  # a prefill streams each layer's missing experts once per chunk: 4096 tokens in one chunk instead of four
  for cell in n8 gb8 gb12; do
    cell_cfg "$cell"
    run "m_trace_${cell}_chunk4096" 75 "${cfg[@]}" "${common[@]}" --route-trace "$TR" --moe-prefetch off \
      --max-num-batched-tokens 4096
  done
}
run_matrix
[ -n "${MATRIX_ONLY:-}" ] && RUNS="${RUNS:-none}"

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
import json, pathlib, re, sys
rows, matrix = [], []
for f in sorted(pathlib.Path(sys.argv[1]).glob("*.json")):
    if f.stat().st_size == 0: continue
    j, _ = json.JSONDecoder().raw_decode(f.read_text())
    if f.stem.startswith("m_"):
        matrix.append((f.stem, j)); continue
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
if matrix:
    # One row per (cell, routing): decode B=1, then prefill 512 and 4096. hit = expert-cache hit rate; PCIe MB/tok =
    # expert bytes copied or read in place per token; H2D = achieved GB/s (PCIe bytes / time) beside the pinned
    # ceiling; SoL = speed of light (weight bytes at the HBM read ceiling + PCIe bytes at the H2D ceiling); frac =
    # achieved / SoL (prefill: of the compute speed of light when the tensor-core ceiling was measured).
    c0 = matrix[0][1]["ceilings"]
    print(f"\n== offload matrix (Qwen3.6-35B-A3B CT-INT4 synthetic; HBM read {c0['read_gbs']:.0f} GB/s, pinned H2D "
          f"{c0.get('h2d_pinned_gbs', 0):.1f} GB/s)")
    print(f"{'cell':<26} {'routing':<6} {'slots':>5} | {'decode':>7} {'hit':>6} {'MB/tok':>7} {'H2D':>6} {'SoL':>7} {'frac':>5} "
          f"{'copy':>6} {'exp':>6} | {'pp512':>7} {'hit':>6} {'frac':>6} | {'pp4096':>7} {'hit':>6} {'frac':>6} "
          f"{'copy':>6} {'exp':>6}")
    # copy / exp: ms per token that expert copies ran, and the part of it not hidden by compute (the forward waited)
    def copies(p, tokens):
        ec = p.get("expert_cache", {})
        return f" {ec.get('copy_ms', float('nan'))/tokens:6.3f} {ec.get('copy_exposed_ms', float('nan'))/tokens:6.3f}"
    def ph(p, tokens):
        ec = p.get("expert_cache", {})
        return p["tok_s"], ec.get("hit_rate", float("nan")), ec.get("pcie_bytes", 0) / tokens / 1e6, ec.get("h2d_gbs", 0), \
            p["speed_of_light_tok_s"], p["fraction_of_speed_of_light"]
    for name, j in matrix:
        d = j["decode"]
        m = re.search(r"expert cache: (\d+) of|holds every routed expert: all (\d+)", j.get("memory_plan", ""))
        routing = "trace" if j.get("routing", "model").startswith("trace") else "model"
        dt, dh, dmb, dh2d, dsol, dfr = ph(d, d["steps"] * d["batch"])
        line = (f"{name:<26} {routing:<6} {(m.group(1) or m.group(2)) if m else '-':>5} | {dt:7.1f} {100*dh:5.1f}% {dmb:7.1f} {dh2d:6.1f} "
                f"{dsol:7.1f} {100*dfr:4.0f}%" + copies(d, d["steps"] * d["batch"]))
        for p in [j["prefill"]] + j.get("prefill_more", []):
            t, h, mb, _, _, fr = ph(p, p["tokens"])
            # prefill: the copies overlap the GEMMs (moe_stream.cuh), so its speed of light is the slower of the
            # tensor-core time and the PCIe time of its expert bytes at the pinned ceiling (c or p marks which)
            if "compute_speed_of_light_tok_s" in p:
                t_c = 1 / p["compute_speed_of_light_tok_s"]
                t_p = mb * 1e6 / (j["ceilings"].get("h2d_pinned_gbs", 0) * 1e9 or float("inf"))
                fr = t * max(t_c, t_p)
                line += f" | {t:7.0f} {100*h:5.1f}% {100*fr:4.0f}%{'p' if t_p > t_c else 'c'}"
            else:
                line += f" | {t:7.0f} {100*h:5.1f}% {100*fr:4.0f}% "
        last = (j.get("prefill_more") or [j["prefill"]])[-1]
        print(line + copies(last, last["tokens"]))
PY