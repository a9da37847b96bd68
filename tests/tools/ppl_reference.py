"""Transformers' perplexity of a Hugging Face checkpoint on the first N windows of a text — the independent reference
that tests/cli/test_run_eval_cli.cpp holds `hlwq eval ppl --max-windows N` to. Same protocol as the shared fixtures'
tiny-moe-dev-ppl.json (../shared/tools/fixtures/train_tiny.py): the file tokenized per blank-line paragraph
(text + "\\n\\n"), concatenated, non-overlapping windows of 512 tokens, tokens 1..511 of each scored, PPL = exp(mean
NLL), fp32 compute on the bf16 checkpoint. Needs torch, transformers and tokenizers (the GPU machine has them).
usage: python3 tests/tools/ppl_reference.py MODEL_DIR TEXT N_WINDOWS OUT_JSON"""
import json
import math
import sys

import torch
import torch.nn.functional as F
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM

model_dir, text_path, n_windows, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
dev = "cuda" if torch.cuda.is_available() else "cpu"
tok = Tokenizer.from_file(f"{model_dir}/tokenizer.json")
ids = []
for chunk in open(text_path, encoding="utf-8").read().split("\n\n"):
    if chunk.strip():
        ids.extend(tok.encode(chunk + "\n\n").ids)
ids = torch.tensor(ids, dtype=torch.long)
window = 512
n = min(n_windows, ids.numel() // window)
model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).to(dev).eval()
nll, cnt = 0.0, 0
with torch.no_grad():
    for i in range(0, n, 16):
        x = torch.stack([ids[j * window:(j + 1) * window] for j in range(i, min(n, i + 16))]).to(dev)
        logits = model(input_ids=x).logits.float()
        nll += F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1),
                               reduction="sum").item()
        cnt += x[:, 1:].numel()
res = {"model": model_dir.rstrip("/").split("/")[-1], "text": text_path.split("/")[-1], "windows": n,
       "scored_tokens": cnt, "ppl": math.exp(nll / cnt), "torch": torch.__version__,
       "transformers": __import__("transformers").__version__, "device": dev,
       "protocol": "tokenize file per blank-line paragraph (text+'\\n\\n'), concatenate, non-overlapping windows of "
                   "512 tokens, the first N, score tokens 1..511 of each window, PPL=exp(mean NLL); fp32 compute on the "
                   "bf16 checkpoint"}
print(json.dumps(res))
json.dump(res, open(out, "w"), indent=2)
