#!/usr/bin/env bash
# Quality of each quantization method on the demo model: perplexity and KL(bf16 || quantized) on held-out
# text, next to the independent PyTorch reference (../shared/fixtures/tiny-moe-dev-quality-reference.json).
# usage: bench/quality_table.sh [METHODS...]   env: TEXTS="pydocs_heldout wiki_test", HLWQ=build/hlwq
set -euo pipefail
cd "$(dirname "$0")/.."
HLWQ=${HLWQ:-build/hlwq}
SHARED=${HLWQ_SHARED:-../shared}
TEXTS=${TEXTS:-pydocs_heldout}
WORK=${WORK:-/tmp/hlwq-quality}
METHODS=("$@")
[ ${#METHODS[@]} -gt 0 ] || METHODS=(rtn rtn-ct mse hlwq-cascade hlwq-cascade-lm5)
mkdir -p "$WORK"
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; commit $(git rev-parse --short HEAD)"
echo
echo "| method | text | ppl | KL(bf16‖q) | top-1 agree | rel. weight MSE | reference KL | reference ppl |"
echo "|---|---|---|---|---|---|---|---|"
for m in "${METHODS[@]}"; do
  q="$WORK/$m"
  mse=$("$HLWQ" quantize -q --force models/tiny-moe-dev "$q" --method "$m" | awk '$1=="="&&$2=="quantized"{print $NF}')
  for t in $TEXTS; do
    j=$("$HLWQ" eval kld "$q" --base models/tiny-moe-dev --text "$SHARED/corpus/$t.txt" --json)
    python3 - "$m" "$t" "$mse" "$SHARED/fixtures/tiny-moe-dev-quality-reference.json" <<PY
import json, sys
m, t, mse, ref_path = sys.argv[1:5]
r = json.loads('''$j''')
names = {"rtn": "ct-int4-rtn (absmax/7, seed)", "rtn-ct": "ct-int4-rtn (absmax/7.5, compressed-tensors)",
         "mse": "ct-int4-mse-scale", "hlwq-cascade": "ct-int4-cascade (seed Q5 table -> rtn)",
         "hlwq-cascade-lm5": "ct-int4-cascade (converged Q5 -> rtn)"}
ref = json.load(open(ref_path))["methods"].get(names.get(m, ""), {}).get(t, {})
print(f"| {m} | {t} | {r['ppl']:.3f} | {r['kld']:.4f} | {r['top1_agree']:.4f} | {mse} | "
      f"{ref.get('kld', float('nan')):.4f} | {ref.get('ppl', float('nan')):.3f} |")
PY
  done
  rm -rf "$q"
done
