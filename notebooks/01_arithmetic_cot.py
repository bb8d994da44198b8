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
# # 01 · Arithmetic chain-of-thought from scratch
#
# A ~1M-parameter decoder, trained from random weights, learns multi-digit addition by writing
# out one step per digit column before it answers:
#
# ```
# 658+189=<think>8+9=17 5+8+1=14 6+1+1=8</think>847<end>
# ```
#
# Each step needs only two digits and a carry, so a small model can get every column right;
# the question is whether it also gets *every* example right. The target on this CPU: **exact
# match ≥ 99.9% on held-out 1–3-digit additions, with the small model, in ≤ 10 minutes of
# training on 2 cores**. Test expressions never occur in training; longer operands than any seen in
# training show how far the learned procedure extrapolates.
#
# Stages: setup → parameters → data → tokenizer → model → train → evaluate → charts → save → report.

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
output_dir = "reports/01_arithmetic_cot"
checkpoint_dir = "runs/01_arithmetic_cot"
ops = ["+"]
min_digits = 1
max_digits = 3
cot = True
n_train = 12800
n_val = 200
n_test = 500
ood_digits = 1
n_test_ood = 100
model_size = "small"
positional_encoding = "rope"
max_length = 128
batch_size = 64
eval_batch_size = 256
learning_rate = 2.0e-3
weight_decay = 0.01
max_steps = 200
warmup_steps = 20
max_grad_norm = 1.0
eval_steps = 50
save_steps = 100
logging_steps = 10
save_total_limit = 2
bf16 = False
report_to = "none"
num_threads = 0
max_new_tokens = 0
n_failures_shown = 10
n_samples_shown = 5

# %%
import logging
import shutil

import pandas as pd
import torch

from mathkit.data.arithmetic import check_fits, generate_length_sets, generate_splits, save_jsonl
from mathkit.evaluation.arithmetic_scoring import evaluate_arithmetic, format_interval, headline_accuracy
from mathkit.models.char_tokenizer import build_char_tokenizer
from mathkit.env import resolve_output_dir, runtime_info, seed_everything
from mathkit.models import build_decoder, save_model
from mathkit.params.arithmetic_cot import ArithmeticCotParams
from mathkit.reporting.charts import plot_accuracy_by, plot_loss_curves
from mathkit.reporting.results import save_figure, save_results
from mathkit.training.trainer import TrainSettings, train_causal_lm

logging.basicConfig(level=logging.WARNING)
params = ArithmeticCotParams.from_namespace(globals())
out = resolve_output_dir(params.output_dir)
out.mkdir(parents=True, exist_ok=True)
seed_everything(params.seed)
if params.num_threads:
    torch.set_num_threads(params.num_threads)
print(runtime_info()["device"], "| threads:", runtime_info()["cpu_threads"])

# %% [markdown]
# ## Data
# Each operand's digit count is drawn uniformly from the range, then the number, so 1-digit
# operands are as common as 3-digit ones (until the 100 possible 1-digit + 1-digit sums run out).
# Train, validation and test share no expression. The extrapolation set has both operands longer
# than anything in training.

# %% tags=["nbval-check-output"]
data_kwargs = dict(ops=params.ops, cot=params.cot, seed=params.seed)
splits = generate_splits(params.n_train, params.n_val, params.n_test, min_digits=params.min_digits,
                         max_digits=params.max_digits, **data_kwargs)
ood_lengths = list(range(params.max_digits + 1, params.max_digits + params.ood_digits + 1))
ood = generate_length_sets(ood_lengths, params.n_test_ood, **data_kwargs) if params.n_test_ood else []
for name, records in {**splits, "extrapolation": ood}.items():
    if records:
        save_jsonl(records, out / "data" / f"{name}.jsonl")
        print(f"{name:13s} n={len(records):6d}  longest={check_fits(records, params.max_length, name)} tokens")

# %% tags=["nbval-check-output"]
pd.DataFrame(splits["train"][: params.n_samples_shown])[["text", "n_digits", "result"]]

# %% [markdown]
# ## Tokenizer
# One token per character and one per marker (`<think>`, `</think>`, `<end>`), so the model sees
# one digit per position.

# %% tags=["nbval-check-output"]
tokenizer = build_char_tokenizer(model_max_length=params.max_length)
example = splits["train"][0]["text"]
print(f"vocabulary: {len(tokenizer)} tokens; eos={tokenizer.eos_token!r} pad={tokenizer.pad_token!r}")
print(example, "->", tokenizer.convert_ids_to_tokens(tokenizer(example)["input_ids"]))

# %% [markdown]
# ## Model

# %% tags=["nbval-check-output"]
model = build_decoder(params.model_size, tokenizer, positional_encoding=params.positional_encoding,
                      max_position_embeddings=params.max_length)
n_params = sum(p.numel() for p in model.parameters())
cfg = model.config
print(f"{params.model_size}: {n_params:,} parameters ({cfg.num_hidden_layers} layers, hidden {cfg.hidden_size}, "
      f"{cfg.num_attention_heads} heads, {cfg.positional_encoding})")

# %% [markdown]
# ## Train
# Loss on the completion only (the model is never asked to predict the question). Checkpoints
# go to `checkpoint_dir` (`runs/`, not committed); if a run is interrupted, running it again
# resumes from the last checkpoint. The metrics file is copied next to the report.

# %%
settings = TrainSettings(
    batch_size=params.batch_size, eval_batch_size=params.eval_batch_size,
    learning_rate=params.learning_rate, weight_decay=params.weight_decay, max_steps=params.max_steps,
    warmup_steps=params.warmup_steps, max_grad_norm=params.max_grad_norm, eval_steps=params.eval_steps,
    save_steps=params.save_steps, logging_steps=params.logging_steps, save_total_limit=params.save_total_limit,
    seed=params.seed, bf16=params.bf16, report_to=params.report_to, max_length=params.max_length,
)
outcome = train_causal_lm(model, tokenizer, splits["train"], splits["val"],
                          output_dir=resolve_output_dir(params.checkpoint_dir), settings=settings)
metrics_file = shutil.copy(outcome.metrics_path, out / "metrics.jsonl")
losses = {k: "n/a" if v is None else f"{v:.4g}" for k, v in
          {"train": outcome.final_train_loss, "validation": outcome.final_eval_loss}.items()}
print(f"{outcome.global_step} steps in {outcome.train_seconds / 60:.1f} min; "
      f"final train loss {losses['train']}, validation loss {losses['validation']}"
      + (f" (resumed from {outcome.resumed_from.name})" if outcome.resumed_from else ""))

# %% [markdown]
# ## Evaluate
# Greedy decoding. Exact match: the answer after `</think>` is exactly the true result.
# Thought match: the whole chain of thought equals the reference. Token accuracy: the share of
# completion tokens the model predicts given the true prefix (teacher forcing).

# %%
eval_kwargs = dict(batch_size=params.eval_batch_size, max_new_tokens=params.max_new_tokens or None)
test_eval = evaluate_arithmetic(model, tokenizer, splits["test"], **eval_kwargs)
ood_eval = evaluate_arithmetic(model, tokenizer, ood, **eval_kwargs) if ood else None
em = test_eval.exact_match
print(f"exact match     {format_interval(em)}")
if test_eval.thought_match:
    print(f"thought match   {format_interval(test_eval.thought_match)}")
print(f"token accuracy  {test_eval.token_accuracy['accuracy']:.4%} (n={test_eval.token_accuracy['n_tokens']} tokens)")
if ood_eval:
    print(f"extrapolation   {format_interval(ood_eval.exact_match)} with {ood_lengths}-digit operands")
print(f"issue target, exact match >= 99.9%: {'met' if em['accuracy'] >= 0.999 else 'not met'}")

# %%
by_digits = {**test_eval.by_digits, **(ood_eval.by_digits if ood_eval else {})}
pd.DataFrame([{"digits": d, "in training range": params.min_digits <= d <= params.max_digits,
               "n": s["n"], "exact match": s["accuracy"],
               "ci95": "[{:.4f}, {:.4f}]".format(*s["ci95"])} for d, s in by_digits.items()])

# %% [markdown]
# ### Failures
# The wrong answers on the test set (the in-range ones first), with what the model wrote.

# %%
failures = test_eval.failures(params.n_failures_shown)
if ood_eval:
    failures += ood_eval.failures(max(0, params.n_failures_shown - len(failures)))
print(f"{sum(not r['correct'] for r in test_eval.rows)} wrong of {em['n']} test examples")
pd.DataFrame(failures, columns=["expression", "expected", "got", "completion"])

# %% [markdown]
# ### Sample completions

# %%
pd.DataFrame(test_eval.samples(params.n_samples_shown)
             + (ood_eval.samples(params.n_samples_shown) if ood_eval else []))

# %% [markdown]
# ## Charts

# %%
fig = plot_loss_curves(metrics_file, title=f"{params.model_size} model, {''.join(params.ops)} "
                       f"{params.min_digits}-{params.max_digits} digits: loss")
save_figure(fig, out, "loss_curves")

# %%
fig = plot_accuracy_by(by_digits, xlabel="digits in the longer operand",
                       title="Exact match by operand length (test + extrapolation)",
                       train_range=(params.min_digits, params.max_digits))
save_figure(fig, out, "accuracy_by_digits")

# %%
if len(params.ops) > 1:
    fig = plot_accuracy_by(test_eval.by_op, xlabel="operator", title="Exact match by operator (test)")
    save_figure(fig, out, "accuracy_by_op")

# %% [markdown]
# ## Save the model
# Weights (safetensors), tokenizer and the data format, ready for
# `python -m mathkit solve --checkpoint <out>/model 658+189` and `python -m mathkit chat`.

# %%
model_dir = save_model(model, tokenizer, out / "model", extra_configs={"arithmetic_format": {
    "ops": params.ops, "min_digits": params.min_digits, "max_digits": params.max_digits, "cot": params.cot}})
print(sorted(p.name for p in model_dir.iterdir()))

# %% [markdown]
# ## Report

# %%
headline = {
    "exact_match": headline_accuracy(em),
    "token_accuracy": test_eval.token_accuracy["accuracy"],
    "train_minutes": outcome.train_seconds / 60,
    "n_params": n_params,
}
if ood_eval:
    headline["extrapolation_exact_match"] = headline_accuracy(ood_eval.exact_match)
metrics = {
    "exact_match": headline_accuracy(em),
    "token_accuracy": test_eval.token_accuracy,
    "thought_match": test_eval.thought_match,
    "accuracy_by_digits": by_digits,
    "accuracy_by_op": test_eval.by_op,
    "n_test": em["n"],
    "n_train": len(splits["train"]),
    "n_params": n_params,
    "train_seconds": outcome.train_seconds,
    "train": outcome.to_dict(),
    "test": test_eval.to_metrics(),
    "extrapolation": ood_eval.to_metrics() if ood_eval else None,
    "extrapolation_lengths": ood_lengths,
}
save_results(out, notebook="01_arithmetic_cot", headline=headline, metrics=metrics, params=params)
headline
