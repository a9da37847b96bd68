#!/usr/bin/env python3
"""Assembles QUALITY.md from the results bench/quality_table.sh left under --work: hlwq's own quantize summaries,
`hlwq eval kld` JSON and hlwq_bench_model decode timings, beside the independent PyTorch reference
(../shared/fixtures/tiny-moe-dev-quality-reference.json). No number in the output is typed by hand."""
import argparse, json, os, re, struct, subprocess, datetime

p = argparse.ArgumentParser()
p.add_argument("--work", required=True)
p.add_argument("--base", required=True)
p.add_argument("--shared", required=True)
p.add_argument("--texts", required=True)
p.add_argument("--methods", required=True)
p.add_argument("--out", required=True)
a = p.parse_args()
texts, methods = a.texts.split(), a.methods.split()
ref = json.load(open(os.path.join(a.shared, "fixtures", "tiny-moe-dev-quality-reference.json")))

# our method -> (the reference's method name, what it is)
REF = {"rtn": "ct-int4-rtn (absmax/7, seed)", "rtn-ct": "ct-int4-rtn (absmax/7.5, compressed-tensors)",
       "mse": "ct-int4-mse-scale", "hlwq-cascade": "ct-int4-cascade (seed Q5 table -> rtn)",
       "hlwq-cascade-lm5": "ct-int4-cascade (converged Q5 -> rtn)", "hlwq-4": "hlwq-4 ls-scale",
       "hlwq-3-l2": "hlwq-3", "hlwq-4-l2": "hlwq-4", "hlwq-5-l2": "hlwq-5"}
DISPLAY = ["bf16", "rtn", "rtn-ct", "mse", "gptq", "mse-gdn-bf16", "gptq-gdn-bf16", "hlwq-cascade", "hlwq-cascade-lm5",
           "hlwq-3", "hlwq-4", "hlwq-4-gptq", "hlwq-4-gdn5-gptq", "hlwq-5", "hlwq-3-l2", "hlwq-4-l2", "hlwq-5-l2"]
DESC = {"bf16": "bf16 (no quantization)", "rtn": "ct-int4 `rtn` (seed: absmax/7)",
        "rtn-ct": "ct-int4 `rtn-ct` (compressed-tensors: absmax/7.5)", "mse": "ct-int4 `mse` (MSE-optimal scale)",
        "hlwq-cascade": "ct-int4 `hlwq-cascade` (seed: HLWQ-Q5 → INT4)",
        "hlwq-cascade-lm5": "ct-int4 `hlwq-cascade-lm5` (converged Q5 → INT4)"}
DESC["gptq"] = "ct-int4 `--calib` (GPTQ, g128 MSE scales) ‡"
for b in range(2, 9):
    DESC[f"hlwq-{b}"] = f"native `hlwq --bits {b}` (least-squares scale)"
    DESC[f"hlwq-{b}-gptq"] = f"native `hlwq --bits {b} --calib` (GPTQ in the rotated domain) ‡"
    DESC[f"hlwq-{b}-l2"] = f"native `hlwq --bits {b} --hlwq-scale l2`"
DESC["gptq-gdn-bf16"] = ("ct-int4 `--ignore '.*\\.linear_attn\\.' --calib` (GPTQ; Gated DeltaNet projections kept "
                         "bf16) ‡")
DESC["mse-gdn-bf16"] = "ct-int4 `mse --ignore '.*\\.linear_attn\\.'` (Gated DeltaNet projections kept bf16)"
DESC["hlwq-4-gdn5-gptq"] = ("native `hlwq --bits 4 --bits-for '.*\\.linear_attn\\.=5' --calib` (Gated DeltaNet "
                            "projections at 5 bits, overrides) ‡")


def st_header(path):
    """(header dict, byte offset of the data buffer)"""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n)), 8 + n


def size_and_bits(model_dir):
    """Checkpoint bytes, and bits per quantized weight (codes + scales + shapes over the weights they encode).
    Linears the config's ignore list names one by one (`--ignore`, or Marlin's shape rule) count at their stored
    width, so a row that keeps some Linears in bf16 is measured over the same weights as the others."""
    total, qbytes, qweights = 0, 0, 0
    with open(os.path.join(model_dir, "config.json")) as f:
        qc = json.load(f).get("quantization_config") or {}
    kept = {n + ".weight" for n in qc.get("ignore", []) if not n.startswith("re:") and n != "lm_head"}
    for fn in sorted(os.listdir(model_dir)):
        if not fn.endswith(".safetensors"):
            continue
        path = os.path.join(model_dir, fn)
        total += os.path.getsize(path)
        h, data = st_header(path)
        for name, e in h.items():
            if name == "__metadata__":
                continue
            nb = e["data_offsets"][1] - e["data_offsets"][0]
            if name.endswith((".weight_packed", ".weight_scale", ".weight_shape", ".hlwq_codes", ".hlwq_norms")):
                qbytes += nb
            if name in kept:  # a Linear kept unquantized: its bytes over its weights
                qbytes += nb
                qweights += e["shape"][0] * e["shape"][1]
            if name.endswith(".weight_packed"):  # [out, in/8] int32 words
                qweights += e["shape"][0] * e["shape"][1] * 8
            if name.endswith(".hlwq_codes"):  # the exact [out, in] is in weight_shape
                s = h[name[: -len(".hlwq_codes")] + ".weight_shape"]
                with open(path, "rb") as f:
                    f.seek(data + s["data_offsets"][0])
                    out_, in_ = struct.unpack("<qq", f.read(16))
                qweights += out_ * in_
    return total, (8.0 * qbytes / qweights if qweights else 16.0)


def quant_mse(m):
    path = os.path.join(a.work, "results", m + ".quantize.txt")
    if m == "bf16" or not os.path.exists(path):
        return 0.0 if m == "bf16" else None
    for line in open(path):
        if line.startswith("= quantized"):
            return float(line.split()[-1])
    return None


speed_repeats = set()  # the timing runs' repeat counts (bench_model's "median (min–max) of N")


def decode_speed(m):
    path = os.path.join(a.work, "results", m + ".speed.txt")
    if not os.path.exists(path):
        return None, None
    best = None
    for line in open(path):
        r = re.search(r"median \(min–max\) of (\d+)", line)
        if r:
            speed_repeats.add(int(r.group(1)))
        c = [x.strip() for x in line.split("|")]
        if len(c) > 8 and c[3] == "decode":
            th = int(c[6])
            tok = float(c[7].split()[0])
            load = c[-2]
            if best is None or th > best[0]:
                best = (th, tok, load)
    return (best[1], best[2]) if best else (None, None)


def fmt_mse(v):
    return "—" if v is None else f"{v:.6f}"


def git(*args):
    try:
        return subprocess.check_output(["git", *args], text=True).strip()
    except Exception:
        return "?"


rows = {}
for m in [x for x in methods if x != "bf16"] + (["bf16"] if "bf16" in methods else []):
    res = {}
    for t in texts:
        f = os.path.join(a.work, "results", f"{m}.{t}.json")
        if os.path.exists(f):
            res[t] = json.load(open(f))
    if m == "bf16":  # the base model's own figures, from the other runs (same text and windows)
        for t in texts:
            src = next((r for r in rows.values() if t in r["res"]), None)
            if src:
                e = src["res"][t]
                res[t] = {"kld": 0.0, "top1_agree": 1.0, "ppl": e["base_ppl"], "base_ppl": e["base_ppl"],
                          "delta_ppl": 0.0, "scored_tokens": e["scored_tokens"], "max_windows": e.get("max_windows", 0)}
    if not res:
        continue
    mdir = a.base if m == "bf16" else os.path.join(a.work, "models", m)
    size, bits = size_and_bits(mdir) if os.path.isdir(mdir) else (None, None)
    tok, load = decode_speed(m)
    decoded = any(e.get("engine_path") == "decoded" for e in res.values())
    rows[m] = dict(res=res, size=size, bits=bits, mse=quant_mse(m), tok=tok, load=load, decoded=decoded)

cpu = "?"
try:
    cpu = re.search(r"Model name:\s*(.*)", subprocess.check_output(["lscpu"], text=True)).group(1).strip()
except Exception:
    pass
out = []
w = out.append
w("# Quality: how close each quantization method stays to the bf16 model\n")
w("Generated by `bench/quality_table.sh` (bench/quality_report.py) from hlwq's own output — do not edit by hand.")
w(f"Commit {git('rev-parse', '--short', 'HEAD')}{' (dirty tree)' if git('status', '--porcelain') else ''}, "
  f"{datetime.datetime.utcnow().strftime('%Y-%m-%d %H:%M UTC')}, {cpu} ({os.cpu_count()} cores).\n")
w("The demo model `models/tiny-moe-dev` (a real trained 16M-parameter Qwen3.5-MoE) quantized by `hlwq quantize`,")
w("evaluated by `hlwq eval kld` against its bf16 original on held-out text (protocol of ../shared/corpus/README.md:")
w("paragraphs + \"\\n\\n\", windows of 512 tokens, tokens 1..511 scored). **bits/w** = stored bits per quantized")
w("weight (codes or int4 values + scales + shapes); **size** = all safetensors bytes (embeddings, lm_head and norms")
w("stay bf16 in every method); **rel. MSE** = Σ(ŵ−w)²/Σw² over the model's quantized matrices (from the quantize")
w("summary); **ref KL / ref ppl** = the independent PyTorch simulation (transformers, dequantized fp32 weights,")
w("../shared/fixtures/tiny-moe-dev-quality-reference.json); **decode tok/s** = `hlwq_bench_model` one-token decode")
w(f"(prompt 64, 32 steps, median of {'/'.join(map(str, sorted(speed_repeats))) or '—'}, all cores), with the machine's 1-minute load beside it: on a shared machine")
w("it is indicative only. hlwq's HLWQ default is the least-squares block scale; the reference simulates it only at 4")
w("bits, so the l2-norm rows are there to check hlwq against the reference at 3 and 5 bits.\n")
w("```sh\nbench/quality_table.sh          # everything; MAX_WINDOWS=N caps each text, TEXTS=... picks texts\n```\n")

base_kl = {}
for t in texts:
    if "rtn" in rows and t in rows["rtn"]["res"]:
        base_kl[t] = rows["rtn"]["res"][t]["kld"]
for t in texts:
    any_row = next((r["res"][t] for r in rows.values() if t in r["res"]), None)
    if any_row is None:
        continue
    mw = any_row.get("max_windows", 0)
    w(f"## {t} ({any_row['scored_tokens']:,} scored tokens{'' if not mw else f', first {mw} windows of the text'})\n")
    w("| method | bits/w | size | ppl | Δppl | KL(bf16‖q) | top-1 agree | rel. MSE | ref KL | ref ppl | KL vs ref | decode tok/s | verdict |")
    w("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    best4 = min((r["res"][t]["kld"] for m, r in rows.items() if t in r["res"] and m != "bf16" and r["bits"] and r["bits"] <= 4.2),
                default=None)
    for m in DISPLAY:
        if m not in rows or t not in rows[m]["res"]:
            continue
        r, e = rows[m], rows[m]["res"][t]
        rr = {} if m == "bf16" else ref["methods"].get(REF.get(m, ""), {}).get(t, {})
        refkl, refppl = (0.0, ref["bf16"][t]["ppl"]) if m == "bf16" else (rr.get("kld"), rr.get("ppl"))
        kl = 0.0 if m == "bf16" else e["kld"]
        ppl = e["base_ppl"] if m == "bf16" else e["ppl"]
        dppl = 0.0 if m == "bf16" else e["delta_ppl"]
        vs = f"{100 * (kl / refkl - 1):+.1f}%" if refkl else "—"
        verdict = []
        if m != "bf16" and t in base_kl and m != "rtn":
            verdict.append("**loses to seed RTN**" if kl > base_kl[t] else "beats seed RTN")
        if m != "bf16" and best4 is not None and r["bits"] and r["bits"] <= 4.2 and kl == best4:
            verdict.append("**best of the ~4-bit methods**")
        if r["decoded"]:
            verdict.append("† engine ran its fp32 decode")
        name = DESC.get(m, m) + (" †" if r["decoded"] else "")
        tok = "—" if r["tok"] is None else f"{r['tok']:.1f} (load {r['load']})"
        w(f"| {name} | {r['bits']:.3f} | {r['size'] / 1e6:.2f} MB | {ppl:.3f} | {dppl:+.3f} | {kl:.4f} | "
          f"{(1.0 if m == 'bf16' else e['top1_agree']):.4f} | {fmt_mse(r['mse'])} | "
          f"{'—' if refkl is None else f'{refkl:.4f}'} | {'—' if refppl is None else f'{refppl:.3f}'} | {vs} | {tok} | "
          f"{', '.join(verdict)} |")
    w("")
# The ablation of quality_table.sh: KL with only one kind of Linear quantized (the rest at the bf16 value).
KINDS = [("mixers", "mixers", r"\.(self_attn|linear_attn)\."), ("attn", "attention", r"\.self_attn\."),
         ("gdn", "Gated DeltaNet", r"\.linear_attn\."), ("experts", "routed experts", r"\.mlp\.experts\."),
         ("shared", "shared expert", r"\.mlp\.shared_expert\."),
         ("nomixers", "all but the mixers", r"\.mlp\.(experts|shared_expert)\.")]
ABL_METHODS = ["rtn", "gptq", "hlwq-4-gptq"]
abl = {}  # (method, text) -> {kind: eval json}
for m in ABL_METHODS:
    for t in texts:
        for k, _, _ in KINDS:
            f = os.path.join(a.work, "results", f"ablate.{m}.{k}.{t}.json")
            if os.path.exists(f):
                abl.setdefault((m, t), {})[k] = json.load(open(f))


def kind_shares():
    """kind -> its share of the quantized weights (from the seed RTN checkpoint's packed tensors)."""
    mdir = os.path.join(a.work, "models", "rtn")
    n, total = {}, 0
    for fn in sorted(os.listdir(mdir)) if os.path.isdir(mdir) else []:
        if fn.endswith(".safetensors"):
            h, _ = st_header(os.path.join(mdir, fn))
            for name, e in h.items():
                if name.endswith(".weight_packed"):
                    c = e["shape"][0] * e["shape"][1] * 8
                    total += c
                    for k, _, rx in KINDS:
                        if re.search(rx, name):
                            n[k] = n.get(k, 0) + c
    return {k: v / total for k, v in n.items()} if total else {}


if abl:
    share = kind_shares()
    w("## Where the error comes from (ablation)\n")
    w("Each cell: KL(bf16‖q) of the model with **only that kind** of Linear quantized by the row's method, every other")
    w("Linear at its bf16 value (`hlwq_ablate`: the chosen matrices' exact decode, dense; same windows as the table),")
    w("and in brackets that KL over the seed RTN's whole-model KL on the text. **all** is the row above. Share of the")
    w("quantized weights: " + ", ".join(f"{lbl} {100 * share[k]:.1f}%" for k, lbl, _ in KINDS
                                        if k in share and k not in ("mixers", "nomixers"))
      + " (mixers = attention (q/k/v/o_proj) + Gated DeltaNet (in_proj_qkv, in_proj_z, out_proj)).\n")
    for t in texts:
        have_m = [m for m in ABL_METHODS if (m, t) in abl and m in rows and t in rows[m]["res"]]
        if not have_m or "rtn" not in rows or t not in rows["rtn"]["res"]:
            continue
        seed = rows["rtn"]["res"][t]["kld"]
        w(f"### {t}\n")
        w("| method | " + " | ".join(lbl for _, lbl, _ in KINDS) + " | all |")
        w("|---|" + "---|" * (len(KINDS) + 1))
        for m in have_m:
            cells = []
            for k, _, _ in KINDS + [("all", "", "")]:
                e = rows[m]["res"][t] if k == "all" else abl[(m, t)].get(k)
                cells.append("—" if e is None else f"{e['kld']:.4f} ({e['kld'] / seed:.2f}×)")
            w(f"| {DESC[m].rstrip(' ‡')} | " + " | ".join(cells) + " |")
        w("")
        for m in have_m:
            d, full = abl[(m, t)], rows[m]["res"][t]["kld"]
            parts = [k for k in ("mixers", "experts", "shared") if k in d]
            if len(parts) == 3:
                tot = sum(d[k]["kld"] for k in parts)
                w(f"- {DESC[m].rstrip(' ‡')}: the mixers alone give {d['mixers']['kld']:.4f}, "
                  f"{100 * d['mixers']['kld'] / full:.0f}% of the whole model's {full:.4f}, from "
                  f"{100 * share.get('mixers', 0):.1f}% of the weights" +
                  (f" (Gated DeltaNet {d['gdn']['kld']:.4f} from {100 * share.get('gdn', 0):.1f}%, attention "
                   f"{d['attn']['kld']:.4f})" if "gdn" in d and "attn" in d else "") +
                  f"; the three kinds alone sum to {tot:.4f} "
                  f"({tot / full:.2f}× the whole: " + ("errors of different kinds partly offset each other)." if tot > full
                                                      else "errors of different kinds compound)."))
            for goal_m, goal in (("gptq", 0.6), ("hlwq-4-gptq", 0.5)):
                if m == goal_m and "nomixers" in d:
                    r = d["nomixers"]["kld"] / seed
                    w(f"  With the mixers left at bf16 (the bound of any wider format for them) it reaches "
                      f"{d['nomixers']['kld']:.4f} = {r:.2f}× the seed's RTN (goal ≤ {goal}×: "
                      f"{'met' if r <= goal else f'missed by {r - goal:.2f}×'}).")
        w("")
# Findings, computed from the rows above (the sentences are fixed, every number is measured).
w("## What the numbers say\n")
for t in texts:
    have = {m: r["res"][t] for m, r in rows.items() if t in r["res"] and m != "bf16"}
    if not have:
        continue
    four = {m: e for m, e in have.items() if rows[m]["bits"] and rows[m]["bits"] <= 4.2}
    if four:
        best = min(four, key=lambda m: four[m]["kld"])
        line = f"- **{t}**: at ~4.1 bits/weight the lowest KL is {DESC.get(best, best)} ({four[best]['kld']:.4f})"
        if "rtn" in have and best != "rtn":
            line += f", {100 * (1 - four[best]['kld'] / have['rtn']['kld']):.0f}% below the seed's RTN ({have['rtn']['kld']:.4f})"
        if "mse" in have and best != "mse":
            line += f" and {100 * (1 - four[best]['kld'] / have['mse']['kld']):.0f}% below the best plain INT4 (`mse`, {have['mse']['kld']:.4f})"
        w(line + ".")
    if "rtn" in have:
        losers = [m for m in have if m != "rtn" and have[m]["kld"] > have["rtn"]["kld"]]
        if losers:
            w(f"  Worse than the seed's plain RTN: " + ", ".join(f"{DESC.get(m, m)} ({have[m]['kld']:.4f})" for m in losers) + ".")
    for hb, lb in (("hlwq-3", "hlwq-3-l2"), ("hlwq-5", "hlwq-5-l2"), ("hlwq-4", "hlwq-4-l2")):
        if hb in have and lb in have:
            w(f"  {hb}: least-squares scale KL {have[hb]['kld']:.4f} vs l2-norm {have[lb]['kld']:.4f}.")
    devs = []
    for m, e in have.items():
        rr = ref["methods"].get(REF.get(m, ""), {}).get(t, {})
        if rr.get("kld"):
            devs.append((abs(e["kld"] / rr["kld"] - 1), m))
    if devs:
        d, m = max(devs)
        mw = next(iter(have.values())).get("max_windows", 0)
        w(f"  Agreement with the independent reference: KL within {100 * d:.1f}% for every method checked "
          f"(largest: {DESC.get(m, m)}){'' if not mw else f'; note this text was cut to {mw} windows while the reference scores all of it'}.")
    # issue 13's goals: calibrated KL relative to the seed's RTN
    for m, goal in (("gptq", 0.6), ("gptq-gdn-bf16", 0.6), ("hlwq-4-gptq", 0.5), ("hlwq-4-gdn5-gptq", 0.5)):
        if m in have and "rtn" in have:
            ratio = have[m]["kld"] / have["rtn"]["kld"]
            # issue 13's HLWQ goal is ≤ 0.5× at ≤ 4.25 bits/weight: a mixed-width row must meet both (the CT INT4
            # goal sets no width; the row's width is printed beside it)
            over = m.startswith("hlwq") and rows[m]["bits"] is not None and rows[m]["bits"] > 4.25
            w(f"  {DESC[m].rstrip(' ‡')}: KL {have[m]['kld']:.4f} = {ratio:.2f}× the seed's RTN at "
              f"{rows[m]['bits']:.3f} bits/w (goal ≤ {goal}×{' at ≤ 4.25 bits/w' if m.startswith('hlwq') else ''}: "
              f"{'met' if ratio <= goal and not over else (f'missed by {ratio - goal:.2f}×' if ratio > goal else 'too many bits')}).")
w("")
if any(m in rows for m in ("gptq", "hlwq-4-gptq")):
    calib = next((open(os.path.join(a.work, "results", m + ".quantize.txt")).read() for m in ("gptq", "hlwq-4-gptq")
                  if os.path.exists(os.path.join(a.work, "results", m + ".quantize.txt"))), "")
    cl = next((l for l in calib.splitlines() if l.startswith("calibration:")), "")
    w("‡ Calibrated on text the evaluation never sees; from the quantize summary: " +
      (re.sub(r"\S*/corpus/", "../shared/corpus/", cl) or "—") + ". What was chosen, the ablations, and why the")
    w("issue's goals (calibrated CT INT4 ≤ 0.6×, HLWQ ≤ 0.5× the seed RTN's KL at ≤ 4.25 bits/w) are missed at one width")
    w("and met by the rows that treat the Gated DeltaNet projections apart: docs/calibration.md.\n")
if any(r["decoded"] for r in rows.values()):
    w("† These rows ran the same codes decoded to dense fp32 weights (`hlwq_dequantize`, exact) on the engine's dense")
    w("path — what quality_table.sh falls back to when the engine of the run could not load the checkpoint natively —")
    w("so no decode speed is given for them. tests/model/test_hlwq_model.cpp holds the native path to the same logits")
    w("within 1e-4 of max |logit|.\n")
missing = [m for m in methods if m not in rows]
if missing:
    w("Not measured in this file (the run was cut short; `bench/quality_table.sh " + " ".join(missing) +
      "` adds them): " + ", ".join(DESC.get(m, m) for m in missing) + ".\n")
open(a.out, "w").write("\n".join(out))
