"""The memory estimate against measured peaks, side by side, and what it predicts for the seeds' claims.

Why: notebooks print :func:`mathkit.models.memory_estimate.estimate` before they load a model, and
the seed projects quote memory figures (Pythia-2.8B + LoRA in 10.5 GB, Gemma-3-4B QLoRA in 12-16 GB)
that nobody here can measure without their GPU. The estimate is worth printing if it matches what
can be measured here. Each case runs in its own process (one case's freed memory never hides in
the next one's peak), through the project's own paths, on the CPU in fp32:

* ``decoder-small-train``, ``decoder-medium-train``: the arithmetic decoder, full training
  (:func:`mathkit.training.train`, AdamW), batch 64 padded to 64 tokens;
* ``smollm2-lora-train``: SmolLM2-135M-Instruct, LoRA r=16 on every projection
  (:func:`mathkit.training.lora.measure_training`), batch 2 padded to 256 tokens;
* ``smollm2-inference``, ``gemma-270m-inference``: greedy ``generate`` of a fixed number of new
  tokens for a batch of one repeated prompt (no padding), so the length is known exactly.

Every batch is padded to the full length (``pad_to_multiple_of``), so the shape the estimate is
given is the shape that ran. Measured: the resident-memory peak of the phase (training or
generation; :func:`mathkit.memory.track_peak_memory`), which includes the process itself, the
weights and everything the phase allocates. The estimate's CPU overhead is a constant; the process's
resident size before the model was loaded is printed next to it. The last table is predictions
only: the seed settings cannot run here.

    python benchmarks/memory_estimate.py --cases decoder-small-train          # the quickest case
    python benchmarks/memory_estimate.py --save benchmarks/results/memory_estimate_cpu   # every case

Run it on a quiet machine (the cases take a few minutes together on one thread); the load average is
printed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from transcript import Transcript  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

REPO = Path(__file__).resolve().parents[1]
MARKER = "RESULT-JSON "
TOLERANCE = 0.15  # the target: predictions within 15% of the measured peak
GB = 1e9

CASES: dict[str, dict] = {
    "decoder-small-train": {"kind": "decoder", "size": "small", "batch": 64, "seq_len": 64, "steps": 3},
    "decoder-medium-train": {"kind": "decoder", "size": "medium", "batch": 64, "seq_len": 64, "steps": 3},
    "smollm2-lora-train": {"kind": "lora", "model": "smollm2-135m-instruct", "batch": 2, "seq_len": 256,
                           "steps": 3, "rank": 16},
    "smollm2-inference": {"kind": "generate", "model": "smollm2-135m-instruct", "batch": 8, "new_tokens": 256},
    "gemma-270m-inference": {"kind": "generate", "model": "gemma-3-270m", "batch": 4, "new_tokens": 128},
}

# The seeds' memory claims and the settings they were made at (seed 000: Pythia-2.8B + LoRA on a
# 16 GB T4/P100, fp16, batch 1 x 512, gradient checkpointing; notebook 04's LoRA: r=32, alpha 64,
# dropout 0.1 on the attention projections. Seed 003: Gemma-3-4B QLoRA, sequence 2048, batch 2,
# r=16, alpha 32, dropout 0.05 on every projection, paged 8-bit AdamW, gradient checkpointing).
SEED_CLAIMS = [
    ("Pythia-2.8B + LoRA, training", "10.5 GB",
     dict(model="pythia-2.8b", method="lora", seq_len=512, batch=1, dtype="float16", gradient_checkpointing=True,
          lora_rank=32, lora_targets="attention", lora_dropout=0.1)),
    ("Pythia-2.8B, inference", "< 6 GB", dict(model="pythia-2.8b", method="inference", seq_len=512, batch=1,
                                               dtype="float16")),
    ("Gemma-3-4B QLoRA, training", "12-16 GB",
     dict(model="gemma-3-4b", method="qlora", seq_len=2048, batch=2, dtype="nf4", compute_dtype="bfloat16",
          gradient_checkpointing=True, optimizer="paged_adamw_8bit", lora_rank=16, lora_dropout=0.05)),
    ("  the same, sequences of 1024", "",
     dict(model="gemma-3-4b", method="qlora", seq_len=1024, batch=2, dtype="nf4", compute_dtype="bfloat16",
          gradient_checkpointing=True, optimizer="paged_adamw_8bit", lora_rank=16, lora_dropout=0.05)),
    ("Gemma-3-4B, 4-bit inference", "4-6 GB", dict(model="gemma-3-4b", method="inference", seq_len=2048, batch=1,
                                                   dtype="nf4", compute_dtype="bfloat16")),
    ("Gemma-3-4B, full-precision inference", "~16 GB", dict(model="gemma-3-4b", method="inference", seq_len=2048,
                                                            batch=1, dtype="float32")),
    ("  the same in bf16", "", dict(model="gemma-3-4b", method="inference", seq_len=2048, batch=1, dtype="bfloat16")),
]


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES), help="cases to measure")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", choices=list(CASES), help=argparse.SUPPRESS)  # one case, in a child process
    ap.add_argument("--save", metavar="PREFIX", help="write PREFIX.json and PREFIX.txt")
    return ap.parse_args(argv)


# ---- one case, in this process ------------------------------------------------------------------

def _training_settings(case: dict) -> dict:
    return {"max_steps": case["steps"], "per_device_train_batch_size": case["batch"],
            "gradient_accumulation_steps": 1, "learning_rate": 1e-4, "max_length": case["seq_len"],
            "pad_to_multiple_of": case["seq_len"], "optim": "adamw_torch", "bf16": False, "logging_steps": 1,
            "train_sampling_strategy": "sequential", "save_strategy": "no"}


def measure_decoder(case: dict) -> tuple[dict, object]:
    from mathkit.data.arithmetic import generate_splits
    from mathkit.memory import current_rss_mb
    from mathkit.models import build_decoder
    from mathkit.models.char_tokenizer import build_char_tokenizer
    from mathkit.models.memory_estimate import estimate
    from mathkit.training import train

    tokenizer = build_char_tokenizer(model_max_length=case["seq_len"])
    records = generate_splits(case["steps"] * case["batch"], 0, 0, max_digits=3, seed=0)["train"]
    baseline = current_rss_mb()
    model = build_decoder(case["size"], tokenizer, max_position_embeddings=case["seq_len"])
    predicted = estimate(model.config, "full", case["seq_len"], case["batch"], device="cpu", dtype="float32",
                         optimizer="adamw_torch")
    with tempfile.TemporaryDirectory() as folder:
        result = train(model, tokenizer, records, None, output_dir=folder, training=_training_settings(case),
                       resume=False)
    return {"baseline_mb": baseline, **result.memory}, predicted


def measure_lora(case: dict) -> tuple[dict, object]:
    from mathkit.data import combine_sources
    from mathkit.data.formatting import format_dataset
    from mathkit.memory import current_rss_mb
    from mathkit.models import load
    from mathkit.models.memory_estimate import estimate
    from mathkit.params.lora_sft import DEFAULT_TARGET_MODULES
    from mathkit.training import lora

    model, tokenizer = load(case["model"], dtype="float32")  # the tokenizer; measure_training loads the model
    del model
    n = case["steps"] * case["batch"]
    pool, _ = combine_sources([{"name": "gsm_symbolic", "split": "train", "n": n},
                               {"name": "sympy_problems", "split": "train", "n": n}], seed=0)
    data = format_dataset(pool.select(range(n)), tokenizer, "think")
    config = lora.build_lora_config(r=case["rank"], alpha=2 * case["rank"], dropout=0.05,
                                    target_modules=list(DEFAULT_TARGET_MODULES))
    baseline = current_rss_mb()
    predicted = estimate(case["model"], "lora", case["seq_len"], case["batch"], device="cpu", dtype="float32",
                         optimizer="adamw_torch", lora_rank=case["rank"], lora_dropout=0.05,
                         lora_targets=list(DEFAULT_TARGET_MODULES))
    with tempfile.TemporaryDirectory() as folder:
        result, _ = lora.measure_training(case["model"], data, lora_config=config, training=_training_settings(case),
                                          output_dir=Path(folder) / "run", load_kwargs={"dtype": "float32"})
    return {"baseline_mb": baseline, **result.memory}, predicted


PROMPT = ("A baker fills 12 trays with 15 rolls each and sells 47 rolls in the morning and 38 in the "
          "afternoon. How many rolls are left? Think step by step and give the final answer.")


def measure_generation(case: dict) -> tuple[dict, object]:
    import torch

    from mathkit.memory import current_rss_mb, track_peak_memory
    from mathkit.models import load
    from mathkit.models.memory_estimate import estimate

    baseline = current_rss_mb()
    model, tokenizer = load(case["model"], dtype="float32")
    ids = tokenizer([PROMPT] * case["batch"], return_tensors="pt")
    seq_len = ids["input_ids"].shape[1] + case["new_tokens"]
    predicted = estimate(case["model"], "inference", seq_len, case["batch"], device="cpu", dtype="float32")
    with track_peak_memory() as memory, torch.no_grad():
        out = model.generate(**ids, max_new_tokens=case["new_tokens"], min_new_tokens=case["new_tokens"],
                             do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert out.shape[1] == seq_len, (out.shape, seq_len)
    return {"baseline_mb": baseline, **memory.as_dict()}, predicted


def measure(name: str, threads: int) -> dict:
    from mathkit.env import seed_everything, set_threads

    set_threads(threads)
    seed_everything(0)
    case = CASES[name]
    run = {"decoder": measure_decoder, "lora": measure_lora, "generate": measure_generation}[case["kind"]]
    memory, predicted = run(case)
    return {"case": name, **case, "measured": memory, "predicted": predicted.as_dict(), "table": predicted.table()}


def child(name: str, threads: int) -> dict:
    """Run one case in a fresh interpreter and read its result."""
    run = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--only", name, "--threads", str(threads)],
                         capture_output=True, text=True, cwd=REPO)
    found = [line for line in run.stdout.splitlines() if line.startswith(MARKER)]
    if run.returncode != 0 or not found:
        sys.exit(f"{name} failed (exit {run.returncode}):\n{run.stderr[-3000:]}")
    return json.loads(found[-1].removeprefix(MARKER))


# ---- the tables ---------------------------------------------------------------------------------

def compare(runs: list[dict], say) -> None:
    say("case                    batch x seq   predicted MiB  measured MiB   ratio  within 15%   "
        "process before model: measured / assumed MiB")
    for run in runs:
        predicted = run["predicted"]["total_bytes"] / 2**20
        measured = run["measured"]["cpu_peak_rss_mb"]
        ratio = predicted / measured
        shape = f"{run['predicted']['batch']} x {run['predicted']['seq_len']}"
        say(f"{run['case']:<23} {shape:>11} {predicted:>15.0f} {measured:>13.0f} {ratio:>7.2f}  "
            f"{'yes' if abs(ratio - 1) <= TOLERANCE else 'NO':>10}   {run['measured']['baseline_mb']:>8.0f} / "
            f"{run['predicted']['overhead'] / 2**20:.0f}")


def seed_table(say) -> list[dict]:
    from mathkit.models.memory_estimate import estimate

    say("\nThe seeds' claims against the estimate's PREDICTIONS (not measured: GPU settings, CUDA overhead "
        "included; GB = 1e9 bytes)")
    say("claim                                 seed says   predicted GB  (GiB)  largest parts")
    rows = []
    for label, claim, settings in SEED_CLAIMS:
        settings = dict(settings)
        est = estimate(settings.pop("model"), settings.pop("method"), device="cuda", **settings)
        parts = sorted(est.parts().items(), key=lambda kv: -kv[1])[:3]
        largest = ", ".join(f"{name} {value / GB:.1f}" for name, value in parts)
        say(f"{label:<37} {claim:>9}   {est.total_bytes / GB:>12.1f}  ({est.total_gib:>4.1f})  {largest}")
        rows.append({"claim": label, "seed_says": claim, "predicted": est.as_dict()})
    return rows


def main(argv=None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if args.only:
        print(MARKER + json.dumps(measure(args.only, args.threads)), flush=True)
        return {}
    transcript = Transcript()
    say = transcript.say
    command = "python benchmarks/memory_estimate.py " + " ".join(argv if argv is not None else sys.argv[1:])
    say(f"# {command.strip()}")
    say(f"CPU, fp32, {args.threads} thread(s), {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; "
        "each case in a fresh process; measured = resident-memory peak of the training / generation phase")
    runs = [child(name, args.threads) for name in args.cases]
    compare(runs, say)
    for run in runs:
        say(f"\n{run['case']}:\n{run['table']}")
    claims = seed_table(say)
    say(f"load average after: {os.getloadavg()[0]:.1f}")
    out = {"command": command, "settings": {"threads": args.threads, "cases": args.cases}, "runs": runs,
           "seed_claims": claims}
    if args.save:
        transcript.save(args.save, out)
    return out


if __name__ == "__main__":
    main()
