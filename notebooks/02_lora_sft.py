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
# # 02 · LoRA fine-tuning for math reasoning: base vs fine-tuned
#
# Does a small LoRA adapter, trained on worked solutions, make a small instruction model better at
# grade-school math problems it has **not** seen? This notebook reproduces the TinyLlama/Mistral
# LoRA recipe (r=32, alpha=64, dropout 0.1 on every attention and MLP projection; cosine learning
# rate with 5% warmup, weight decay 0.05, gradient accumulation 8; loss on the solution only; the
# checkpoint with the lowest validation loss kept) and measures it honestly:
#
# * the base model is evaluated **first**, with the same prompt and greedy decoding as the
#   fine-tuned one, on problems from GSM-Symbolic templates that are held out of training (the
#   original GSM8K problem of each held-out template and new variants of it);
# * every accuracy comes with its n and a 95% Wilson interval, and the paired change with an exact
#   McNemar test, since the same problems are solved before and after;
# * the adapter is saved, reloaded into a fresh base model, and must generate exactly what the
#   trained model generated before it is evaluated.
#
# Locally the model is SmolLM2-135M-Instruct (bundled offline) on CPU; the Kaggle parameter files
# run TinyLlama-1.1B-Chat and Mistral-7B-Instruct (4-bit NF4, paged 8-bit AdamW) on the hub data
# of the original project (GSM8K + NuminaMath + gsm-hard).

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
output_dir = "reports/02_lora_sft"
torch_threads = 1
base_model = "smollm2-135m-instruct"
model_dtype = "float32"
load_in_4bit = False
device_map = None
offload_folder = None
train_sources = [{"name": "gsm_symbolic", "split": "train", "n": 12}, {"name": "arithmetic", "split": "train", "n": 8}]
n_train = 12
n_val = 4
drop_long_examples = True
eval_sources = [{"name": "gsm8k_originals", "split": "test", "n": 4}]
prompt_style = "plain"
system_prompt = None
lora_r = 32
lora_alpha = 64.0
lora_dropout = 0.1
lora_target_modules = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
num_train_epochs = 2.0
max_steps = 2
learning_rate = 1.0e-4
lr_scheduler_type = "cosine"
warmup_ratio = 0.05
weight_decay = 0.05
per_device_train_batch_size = 2
per_device_eval_batch_size = 8
gradient_accumulation_steps = 1
max_length = 384
precision = "auto"
optim = "auto"
gradient_checkpointing = False
auto_find_batch_size = False
group_by_length = False
eval_steps = 2
save_total_limit = 2
logging_steps = 1
resume = True
keep_checkpoints = False
eval_batch_size = 4
max_new_tokens = 16
eval_bf16 = False
calculator_check = True
merge = False
n_reload_check = 2
reload_max_new_tokens = 8
n_examples_shown = 1

# %%
import logging
import shutil
from collections import Counter

import pandas as pd
import torch
from IPython.display import Markdown, display

from mathkit.reporting import comparison as lora_report
from mathkit.training import lora
from mathkit.evaluation.calculator import calculator_supported
from mathkit.data import combine_sources
from mathkit.data.formatting import format_dataset
from mathkit.env import best_device, resolve_output_dir, seed_everything
from mathkit.evaluation.evaluator import compare_records, evaluate_model
from mathkit.memory import release_memory, track_peak_memory
from mathkit.models.base import load_base_model
from mathkit.models.io import save_model
from mathkit.params.lora_sft import LoraSftParams
from mathkit.reporting.charts import plot_loss_curves
from mathkit.reporting.results import save_figure, save_results

logging.basicConfig(level=logging.WARNING)
params = LoraSftParams.from_namespace(globals())
out = resolve_output_dir(params.output_dir)
out.mkdir(parents=True, exist_ok=True)
seed_everything(params.seed)
if params.torch_threads:
    torch.set_num_threads(params.torch_threads)
device = best_device()
print(f"device: {device} | threads: {torch.get_num_threads()} | output: {out.name}")

# %% [markdown]
# ## Data
# Training problems come only from the *training* GSM-Symbolic templates (plus word-free
# arithmetic); the headline evaluation uses the held-out templates. The validation set that picks
# the best checkpoint is cut from the training pool, so the held-out templates never influence
# training. No evaluated problem may appear in training.

# %% tags=["nbval-check-output"]
pool, provenance = combine_sources(params.train_sources, seed=params.seed)  # concatenated + shuffled
pool = pool.select(range(min(params.n_train + params.n_val, len(pool))))
split = pool.train_test_split(test_size=params.n_val, seed=params.seed)
train_rows, val_rows = split["train"], split["test"]
eval_set, eval_provenance = combine_sources(params.eval_sources, seed=params.seed)
leaks = lora.find_leaks(pool, eval_set)
print(f"train {len(train_rows)} | validation {len(val_rows)} | evaluation {len(eval_set)}")
print("training sources:", dict(sorted(Counter(train_rows["source"]).items())))
print("evaluation groups:", dict(sorted(Counter(map(lora_report.eval_group, eval_set)).items())))
print(f"held-out templates in training: {len(leaks['held_out_templates'])}, "
      f"evaluation problems in training: {len(leaks['problems'])}")
assert not leaks["held_out_templates"] and not leaks["problems"], leaks

# %% [markdown]
# ## Model
# The base model and its tokenizer; prompts are the tokenizer's chat template with the
# chain-of-thought instruction of `prompt_style`, identical for training and both evaluations.

# %%
load_kwargs = dict(dtype=params.model_dtype, load_in_4bit=params.load_in_4bit, device_map=params.device_map)
if params.offload_folder:
    load_kwargs["offload_folder"] = params.offload_folder
model, tokenizer = load_base_model(params.base_model, **load_kwargs)
train_ds = format_dataset(train_rows, tokenizer, params.prompt_style, system_prompt=params.system_prompt)
val_ds = format_dataset(val_rows, tokenizer, params.prompt_style, system_prompt=params.system_prompt)
if params.drop_long_examples:
    train_ds, n_long = lora.drop_long_examples(train_ds, tokenizer, params.max_length)
    val_ds, n_long_val = lora.drop_long_examples(val_ds, tokenizer, params.max_length)
    print(f"dropped {n_long} training and {n_long_val} validation examples over {params.max_length} tokens")
print(f"{params.base_model}: {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters, "
      f"tied embeddings: {lora.has_tied_embeddings(model)}")

# %% tags=["nbval-check-output"]
example = train_ds[0]
print(example["prompt"] + example["completion"])

# %% [markdown]
# ## Evaluate the base model
# Before any training, with the prompt and decoding the fine-tuned model will get.

# %%
eval_kwargs = dict(style=params.prompt_style, system_prompt=params.system_prompt,
                   batch_size=params.eval_batch_size, max_new_tokens=params.max_new_tokens,
                   bf16=params.eval_bf16)
with track_peak_memory() as base_eval_memory:
    base_eval = evaluate_model(model, tokenizer, eval_set, records_path=out / "records" / "base.jsonl",
                               **eval_kwargs)
s = base_eval.summary
print(f"base accuracy {s['accuracy']:.1%} [{s['ci95'][0]:.1%}, {s['ci95'][1]:.1%}] (n={s['n']}), "
      f"{s['tokens_per_second']:.0f} tokens/s")

# %% [markdown]
# ## Train the LoRA adapter
# peft LoRA through TRL's `SFTTrainer` on prompt/completion pairs (loss on the completion only).
# On CPU: bf16 autocast where the CPU has native bf16, `use_cpu=True`; on a GPU: the 4-bit base
# is prepared for k-bit training and the optimizer is paged 8-bit AdamW.

# %% tags=["nbval-check-output"]
lora_config = lora.build_lora_config(r=params.lora_r, alpha=params.lora_alpha, dropout=params.lora_dropout,
                                     target_modules=params.lora_target_modules,
                                     tied_embeddings=lora.has_tied_embeddings(model))
settings = lora.SftSettings.from_params(params)
model = lora.attach_lora(model, lora_config, gradient_checkpointing=settings.gradient_checkpointing)
trainable = lora.trainable_parameters(model)
print(f"trainable parameters: {trainable['trainable']:,} of {trainable['total']:,} "
      f"({trainable['percent']:.2f}%)")

# %%
sft_config = lora.build_sft_config(settings, out / "checkpoints", device=device, has_eval=True)
trainer, train_result = lora.train_sft(model, tokenizer, train_ds, val_ds, sft_config,
                                       metrics_path=out / "metrics.jsonl", resume=params.resume)
print(f"{train_result.global_step} optimizer steps, {train_result.train_tokens:,} tokens in "
      f"{train_result.step_seconds:.0f} s: {train_result.tokens_per_s:.0f} tokens/s; "
      f"best checkpoint {train_result.best_checkpoint} (eval loss {train_result.best_eval_loss})")

# %%
fig = plot_loss_curves(out / "metrics.jsonl", title=f"LoRA fine-tuning of {params.base_model}")
save_figure(fig, out, "loss_curves")

# %% [markdown]
# ## Save, reload, compare
# The adapter (`adapter_config.json`, `adapter_model.safetensors`, the tokenizer) goes to
# `adapter/`. A fresh base model with the saved adapter must generate exactly what the trained
# model generates; that reloaded model is the one evaluated below.

# %%
adapter_dir = save_model(trainer.model, tokenizer, out / "adapter")
if not params.keep_checkpoints:  # optimizer states (~3x the adapter) are only needed to resume
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
check_prompts = list(val_ds["prompt"][: params.n_reload_check])
reference = lora.greedy_completions(trainer.model, tokenizer, check_prompts,
                                    max_new_tokens=params.reload_max_new_tokens)
del trainer, model
print(f"released {release_memory():.0f} MiB of freed memory")
base_again, tokenizer = load_base_model(params.base_model, **load_kwargs)
tuned = lora.load_adapter(base_again, adapter_dir)
reload_check = lora.check_same_generations(reference, tuned, tokenizer, check_prompts,
                                           max_new_tokens=params.reload_max_new_tokens)
print("reloaded adapter generates identically:", reload_check["identical"])
assert reload_check["identical"], reload_check["pairs"]

# %% [markdown]
# A full-precision base is evaluated with the adapter merged into its weights: the same function,
# without 2 extra small matmuls per projection, which makes CPU generation several times faster.
# A 4-bit base keeps the adapter separate (merging would requantize); with `merge: true` it is
# merged into the base reloaded in full precision and saved under `merged/`.

# %%
if not lora.is_quantized(tuned):
    tuned = tuned.merge_and_unload()
if params.merge:
    if lora.is_quantized(tuned):
        full_kwargs = {**load_kwargs, "load_in_4bit": False,
                       "dtype": "bfloat16" if device == "cuda" else "float32"}
        merged = lora.merge_adapter(load_base_model(params.base_model, **full_kwargs)[0], adapter_dir)
        save_model(merged, tokenizer, out / "merged")
        del merged
        release_memory()
    else:
        save_model(tuned, tokenizer, out / "merged")
    print("merged model saved to", (out / "merged").name)

# %% [markdown]
# ## Evaluate the fine-tuned model

# %%
with track_peak_memory() as tuned_eval_memory:
    tuned_eval = evaluate_model(tuned, tokenizer, eval_set, records_path=out / "records" / "tuned.jsonl",
                                **eval_kwargs)
s = tuned_eval.summary
print(f"fine-tuned accuracy {s['accuracy']:.1%} [{s['ci95'][0]:.1%}, {s['ci95'][1]:.1%}] (n={s['n']}), "
      f"{s['tokens_per_second']:.0f} tokens/s")

# %% [markdown]
# ## Arithmetic or set-up?
# A small model can set a step up right and still compute it wrong (`3*68=184`), and every later
# step inherits the error. With `calculator_check`, both models solve the held-out problems again
# while a calculator writes the result of every `expression =` they generate
# (`mathkit.evaluation.calculator`; GSM8K's authors ran their models the same way). What the calculator adds
# is what arithmetic errors cost; what stays wrong was set up wrong.

# %%
calculator_rows, calculator_uses = None, None
if params.calculator_check and not calculator_supported(tokenizer):
    print(f"calculator check skipped: {params.base_model}'s tokenizer does not write digits one token each")
elif params.calculator_check:
    held_out_set = eval_set.filter(lora_report.is_held_out)
    calc_kwargs = {**eval_kwargs, "calculator": True}
    tuned_calc = evaluate_model(tuned, tokenizer, held_out_set,
                                records_path=out / "records" / "tuned_calculator.jsonl", **calc_kwargs)
    del tuned
    release_memory()
    base_fresh, _ = load_base_model(params.base_model, **load_kwargs)
    base_calc = evaluate_model(base_fresh, tokenizer, held_out_set,
                               records_path=out / "records" / "base_calculator.jsonl", **calc_kwargs)
    del base_fresh
    calculator_rows = [
        lora_report.subset_row(base_eval.records, base_calc.records, lora_report.is_held_out, "base model"),
        lora_report.subset_row(tuned_eval.records, tuned_calc.records, lora_report.is_held_out, "fine-tuned model"),
        lora_report.subset_row(base_calc.records, tuned_calc.records, lora_report.is_held_out,
                               "held-out templates, both with calculator"),
    ]
    calculator_uses = {"base": base_calc.summary["calculator_uses"], "tuned": tuned_calc.summary["calculator_uses"]}
    display(Markdown(lora_report.comparison_markdown(calculator_rows[:2],
                                                     labels=("without calculator", "with calculator"))))
    display(Markdown(f"Results written by the calculator: {calculator_uses['base']} for the base model, "
                     f"{calculator_uses['tuned']} for the fine-tuned one, on {len(held_out_set)} "
                     "held-out problems. " + lora_report.verdict(calculator_rows[2])))

# %% [markdown]
# ## Report
# Accuracy before and after with 95% intervals. The headline is the **held-out templates**
# (problem structures training never saw: their GSM8K originals and new variants). Where the
# evaluation includes them, the originals of the *training* templates (structures seen as
# variants, the original problems never) and held-out arithmetic separate "learned the problems it
# saw variants of" from "reasons better". Then the paired change and the problems fixed and broken.

# %%
headline = lora_report.headline_row(base_eval.records, tuned_eval.records)
groups = lora_report.comparison_rows(base_eval.records, tuned_eval.records)
comparison = compare_records(base_eval, tuned_eval)
held_ids = {r["id"] for r in base_eval.records if lora_report.is_held_out(r)}
paired = (compare_records([r for r in base_eval.records if r["id"] in held_ids],
                          [r for r in tuned_eval.records if r["id"] in held_ids]) if held_ids else comparison)
display(Markdown(lora_report.comparison_markdown([headline] + groups)))
display(Markdown(f"Paired change on {headline['group']}: {paired['n_fixed']} fixed, {paired['n_broken']} "
                 f"broken; exact McNemar p = {paired['mcnemar_p']:.3g}. " + lora_report.verdict(headline)))

# %%
fig = lora_report.plot_before_after([headline] + groups[1:],
                                    title=f"{params.base_model}: base vs LoRA fine-tuned")
save_figure(fig, out, "accuracy_before_after")

# %%
display(Markdown(lora_report.examples_markdown(comparison, "fixed", n=params.n_examples_shown)))
display(Markdown(lora_report.examples_markdown(comparison, "broken", n=params.n_examples_shown)))

# %%
cost = pd.DataFrame([
    {"phase": "base evaluation", "seconds": round(base_eval.summary["seconds"]),
     "tokens/s": round(base_eval.summary["tokens_per_second"], 1), **base_eval_memory.as_dict()},
    {"phase": "training", "seconds": round(train_result.train_runtime_s),
     "tokens/s": round(train_result.tokens_per_s, 1), **train_result.memory},
    {"phase": "fine-tuned evaluation", "seconds": round(tuned_eval.summary["seconds"]),
     "tokens/s": round(tuned_eval.summary["tokens_per_second"], 1), **tuned_eval_memory.as_dict()},
])
cost[["phase", "seconds", "tokens/s", "cpu_peak_rss_mb", "cpu_added_mb", "cuda_peak_allocated_mb", "scope"]]

# %% [markdown]
# ## Results

# %%
save_results(
    out, notebook="02_lora_sft", params=params,
    headline={
        "base_accuracy": lora_report.headline_accuracy(headline, "base"),
        "tuned_accuracy": lora_report.headline_accuracy(headline, "tuned"),
        "trainable_percent": round(trainable["percent"], 3),
        "train_tokens_per_s": round(train_result.tokens_per_s, 1),
    },
    metrics={
        "headline_set": headline["group"], "headline": headline, "groups": groups,
        "base": base_eval.summary, "tuned": tuned_eval.summary,
        "delta_pp": headline["delta_pp"], "relative_improvement": headline["relative"],
        "paired": {k: paired[k] for k in ("n", "n_fixed", "n_broken", "both_correct", "both_wrong",
                                          "mcnemar_p")},
        "training": train_result.as_dict(), "trainable": trainable,
        "memory": {"base_eval": base_eval_memory.as_dict(), "tuned_eval": tuned_eval_memory.as_dict(),
                   "training": train_result.memory},
        "reload_identical": reload_check["identical"],
        "calculator_check": ({"rows": calculator_rows, "uses": calculator_uses}
                             if calculator_rows else None),
        "data": {"train": len(train_ds), "validation": len(val_ds), "evaluation": len(eval_set),
                 "provenance": provenance, "eval_provenance": eval_provenance},
    },
)
print(f"{headline['group']}: base {headline['base']:.1%} -> fine-tuned {headline['tuned']:.1%} "
      f"({headline['delta_pp']:+.1f} pp, n={headline['n']})")
print(lora_report.verdict(headline))
