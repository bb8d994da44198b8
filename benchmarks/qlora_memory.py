"""QLoRA vs LoRA vs full fine-tuning on one model: peak memory and training tokens/s, side by side.

Why: QLoRA stores the base in 4 bits to save memory, at the price of dequantizing every weight at
every step. How much it saves and costs depends on the model: Gemma-3-270M holds 168M of its 268M
parameters in the 262k-token embedding, which stays un-quantized (and tied to the output head), and
its logits dominate activation memory. This script trains the same LoRA (r, alpha, every
projection) on the same examples in the same order, with the same batch, optimizer and steps,

* on the base in 4 bits (NF4, double quantization; compute dtype ``--compute-dtype``): QLoRA,
* on the base un-quantized (``--lora-dtype``; the machine policy decides bf16 autocast): LoRA,

each set-up in its own process (so one run's freed memory never counts in the next one's peak), and
estimates full fine-tuning from the LoRA run (:func:`mathkit.training.lora.full_finetune_estimate`:
gradients and two AdamW moments for every weight; 6/4 of LoRA's work per token). It prints peak
resident memory, what training added to it, tokens/s, and each set-up's ratio to QLoRA.

    python benchmarks/qlora_memory.py --steps 1                 # a check that it runs
    python benchmarks/qlora_memory.py --threads 2 --save benchmarks/results/qlora_memory_cpu

Tokens/s counts non-padding tokens over optimizer-step seconds (the first step, with its warm-up,
included: use several steps). Run it on a quiet machine; the load average is printed.
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
SETUPS = ("qlora", "lora")
MARKER = "RESULT-JSON "


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="gemma-3-270m", help="alias or folder for mathkit.models.load")
    ap.add_argument("--steps", type=int, default=4, help="optimizer steps per set-up")
    ap.add_argument("--batch", type=int, default=4, help="sequences per optimizer step (no accumulation)")
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--alpha", type=float, default=32.0)
    ap.add_argument("--compute-dtype", default="float32", help="4-bit compute dtype (float32 without native bf16)")
    ap.add_argument("--lora-dtype", default="float32", help="weights of the un-quantized base")
    ap.add_argument("--bf16", action="store_true", help="ask for bf16 autocast (the machine policy may refuse)")
    ap.add_argument("--packing", action="store_true", help="TRL best-fit packing into --max-length")
    ap.add_argument("--checkpointing", action="store_true", help="activation (gradient) checkpointing")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", choices=SETUPS, help=argparse.SUPPRESS)  # one set-up, in a child process
    ap.add_argument("--save", metavar="PREFIX", help="write PREFIX.json and PREFIX.txt")
    return ap.parse_args(argv)


def measure(args) -> dict:
    """One set-up in this process: :func:`mathkit.training.lora.measure_training`."""
    from mathkit.data import combine_sources
    from mathkit.data.formatting import format_dataset
    from mathkit.env import seed_everything, set_threads
    from mathkit.models import load
    from mathkit.params.lora_sft import DEFAULT_TARGET_MODULES
    from mathkit.training import lora

    set_threads(args.threads)
    seed_everything(0)
    _, tokenizer = load(args.model, dtype="float32")  # the tokenizer; the model is loaded per set-up
    n = args.steps * args.batch
    pool, _ = combine_sources([{"name": "gsm_symbolic", "split": "train", "n": n},
                               {"name": "sympy_problems", "split": "train", "n": n}], seed=0)
    data = format_dataset(pool.select(range(n)), tokenizer, "think")
    config = lora.build_lora_config(r=args.rank, alpha=args.alpha, dropout=0.05,
                                    target_modules=list(DEFAULT_TARGET_MODULES))
    load_kwargs = ({"load_in_4bit": True, "dtype": args.compute_dtype} if args.only == "qlora"
                   else {"dtype": args.lora_dtype})
    training = {"max_steps": args.steps, "per_device_train_batch_size": args.batch, "gradient_accumulation_steps": 1,
                "learning_rate": 2e-4, "max_length": args.max_length, "packing": args.packing,
                "activation_checkpointing": args.checkpointing, "bf16": args.bf16, "optim": "adamw_torch",
                "logging_steps": 1, "train_sampling_strategy": "sequential", "seed": 0}
    with tempfile.TemporaryDirectory() as folder:
        result, parameters = lora.measure_training(args.model, data, lora_config=config, training=training,
                                                   output_dir=Path(folder) / "run", load_kwargs=load_kwargs)
    return {"setup": args.only, "parameters": parameters, "steps": result.global_step,
            "tokens": result.train_tokens, "step_seconds": result.step_seconds,
            "tokens_per_s": result.tokens_per_s, **result.memory}


def child(args, setup: str) -> dict:
    """Run one set-up in a fresh interpreter (the same settings, ``--only SETUP``) and read its result."""
    argv = ["--model", args.model, "--steps", str(args.steps), "--batch", str(args.batch),
            "--max-length", str(args.max_length), "--rank", str(args.rank), "--alpha", str(args.alpha),
            "--compute-dtype", args.compute_dtype, "--lora-dtype", args.lora_dtype, "--threads", str(args.threads),
            *(["--bf16"] if args.bf16 else []), *(["--packing"] if args.packing else []),
            *(["--checkpointing"] if args.checkpointing else []), "--only", setup]
    run = subprocess.run([sys.executable, str(Path(__file__).resolve()), *argv], capture_output=True, text=True,
                         cwd=REPO)
    found = [line for line in run.stdout.splitlines() if line.startswith(MARKER)]
    if run.returncode != 0 or not found:
        sys.exit(f"{setup} failed (exit {run.returncode}):\n{run.stderr[-3000:]}")
    return json.loads(found[-1].removeprefix(MARKER))


def main(argv=None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    if args.only:
        print(MARKER + json.dumps(measure(args)), flush=True)
        return {}
    from mathkit.env import cpu_supports_bf16
    from mathkit.training.lora import full_finetune_estimate

    transcript = Transcript()
    say = transcript.say
    command = "python benchmarks/qlora_memory.py " + " ".join(argv if argv is not None else sys.argv[1:])
    say(f"# {command.strip()}")
    say(f"{args.model}: LoRA r={args.rank} alpha={args.alpha:g} on every projection, batch {args.batch} x "
        f"{args.max_length} max tokens{' packed' if args.packing else ''}, {args.steps} optimizer steps, "
        f"AdamW, checkpointing {'on' if args.checkpointing else 'off'}, {args.threads} thread(s); "
        f"{os.cpu_count()} cores, native bf16: {cpu_supports_bf16()}, load average {os.getloadavg()[0]:.1f}")
    runs = {setup: child(args, setup) for setup in SETUPS}
    lora_run = runs["lora"]
    estimate = full_finetune_estimate(parameters=lora_run["parameters"], lora_peak_mb=lora_run["cpu_peak_rss_mb"],
                                      lora_tokens_per_s=lora_run["tokens_per_s"])
    rows = [(f"QLoRA (4-bit, compute {args.compute_dtype})", runs["qlora"]["cpu_peak_rss_mb"],
             runs["qlora"]["cpu_added_mb"], runs["qlora"]["tokens_per_s"]),
            (f"LoRA ({args.lora_dtype} weights)", lora_run["cpu_peak_rss_mb"], lora_run["cpu_added_mb"],
             lora_run["tokens_per_s"]),
            ("full fine-tuning (estimated)", estimate["peak_mb"], None, estimate["tokens_per_s"])]
    base_mb, base_speed = rows[0][1], rows[0][3]
    say("set-up                              peak MiB  added MiB  tokens/s  memory vs QLoRA  speed vs QLoRA")
    for name, peak, added, speed in rows:
        added_text = f"{added:>9.0f}" if added is not None else f"{'-':>9}"
        say(f"{name:<34} {peak:>9.0f}  {added_text}  {speed:>8.1f}  {peak / base_mb:>14.2f}x  "
            f"{speed / base_speed if base_speed else 0:>13.2f}x")
    say(estimate["how"])
    say(f"load average after: {os.getloadavg()[0]:.1f}")
    out = {"command": command, "settings": {k: v for k, v in vars(args).items() if k not in ("save", "only")},
           "runs": runs, "full_finetune_estimate": estimate}
    if args.save:
        transcript.save(args.save, out)
    return out


if __name__ == "__main__":
    main()
