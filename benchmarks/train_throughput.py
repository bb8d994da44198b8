"""LoRA training speed: the project's training path against a plain PEFT + torch loop, and its levers.

Why: how long a CPU notebook may train decides what it can learn, and the project's path
(:func:`mathkit.training.train`, TRL's ``SFTTrainer`` with mathkit's defaults) must not be much
slower than the simplest loop that does the same work. This script trains the same model
(SmolLM2-135M-Instruct through :func:`mathkit.models.load`), with the same LoRA
(:mod:`mathkit.training.lora`: rank, alpha, dropout, every projection), on the same examples in the
same order (GSM-Symbolic training variants in the gsm8k answer style, loss on the completion only),
with the same batch, precision and number of optimizer steps, both ways, and prints:

* tokens/s of each run (non-padding tokens per second of optimizer steps, and per second of wall
  time, which includes validation passes and set-up), and the project / plain ratio;
* the levers, each changed alone on the project path: padding-free batches (TRL ``padding_free``:
  one flattened sequence with position ids, no padding), activation (gradient) checkpointing on,
  fused AdamW instead of the foreach one, and validation every 2 steps;
* the same project and plain runs with each ``--threads`` count (1 vs 2).

    python benchmarks/train_throughput.py                # a few minutes on one thread
    python benchmarks/train_throughput.py --threads 1 2 --save benchmarks/results/train_throughput_cpu

Runs are short (``--steps`` optimizer steps after one untimed warm-up step) and run one after the
other, so a change in machine load moves them; the load average is printed before and after.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import TrainerCallback

from transcript import Transcript  # noqa: E402  (benchmarks/ is on sys.path when run as a script)
from mathkit.data import load_math_dataset
from mathkit.data.formatting import format_dataset
from mathkit.env import cpu_supports_bf16, seed_everything, set_threads
from mathkit.models import load
from mathkit.params.lora_sft import DEFAULT_TARGET_MODULES
from mathkit.training import lora, train

REPO = Path(__file__).resolve().parents[1]
LEVERS = {  # name -> training-block changes on the project path (and whether it validates)
    # TRL refuses padding_free with max_length unless packing: the examples are already short enough
    "padding_free": {"padding_free": True, "max_length": None},
    "activation_checkpointing": {"activation_checkpointing": True},
    "adamw_torch_fused": {"optim": "adamw_torch_fused"},
    "eval_every_2_steps": {"eval_strategy": "steps", "eval_steps": 2},
}


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m-instruct", help="alias or folder for mathkit.models.load")
    ap.add_argument("--steps", type=int, default=4, help="timed optimizer steps per run (after 1 warm-up step)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--rank", type=int, default=32)
    ap.add_argument("--alpha", type=float, default=64.0)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--max-length", type=int, default=384)
    ap.add_argument("--precision", choices=("fp32", "bf16"), default=None,
                    help="default: bf16 autocast where the CPU has native bf16, else fp32")
    ap.add_argument("--threads", type=int, nargs="+", default=[1], help="torch threads; each count is a run pair")
    ap.add_argument("--levers", nargs="*", default=list(LEVERS), choices=list(LEVERS),
                    help="project-path variants, run with the first thread count")
    ap.add_argument("--save", metavar="PREFIX", help="write PREFIX.json and PREFIX.txt")
    return ap.parse_args(argv)


def examples(tokenizer, n: int, seed: int = 0):
    """``n`` training examples (prompt/completion, gsm8k answer style), in a fixed order."""
    rows = load_math_dataset("gsm_symbolic", split="train", n=n, seed=seed)
    return format_dataset(rows, tokenizer, style="gsm8k")


def lora_model(args):
    model, tokenizer = load(args.model, dtype="float32")
    config = lora.build_lora_config(r=args.rank, alpha=args.alpha, dropout=0.1,
                                    target_modules=list(DEFAULT_TARGET_MODULES),
                                    tied_embeddings=lora.has_tied_embeddings(model))
    return lora.attach_lora(model, config), tokenizer


# ---- the plain loop ------------------------------------------------------------------------------

def tokenize(tokenizer, prompt: str, completion: str, max_length: int) -> tuple[list[int], list[int]]:
    """Input ids and labels (-100 on the prompt): the completion-only loss TRL computes."""
    p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    c = tokenizer(completion, add_special_tokens=False)["input_ids"]
    if tokenizer.eos_token_id is not None and (not c or c[-1] != tokenizer.eos_token_id):
        c = c + [tokenizer.eos_token_id]
    ids = (p + c)[:max_length]
    return ids, ([-100] * len(p) + c)[:max_length]


def collate(batch: list[tuple[list[int], list[int]]], pad_id: int) -> dict:
    """Right-padded to the longest example of the batch, like TRL's collator."""
    width = max(len(ids) for ids, _ in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, (x, y) in enumerate(batch):
        ids[i, :len(x)], labels[i, :len(y)], mask[i, :len(x)] = torch.tensor(x), torch.tensor(y), 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def plain_loop(args, data, bf16: bool) -> dict:
    """PEFT LoRA model, torch AdamW (foreach), one optimizer step per batch; the first step untimed."""
    model, tokenizer = lora_model(args)
    model.train()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    encoded = [tokenize(tokenizer, p, c, args.max_length) for p, c in zip(data["prompt"], data["completion"])]
    batches = [collate(encoded[i:i + args.batch], pad) for i in range(0, len(encoded), args.batch)]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr)
    tokens, seconds, wall = 0, 0.0, time.perf_counter()
    for step, batch in enumerate(batches):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step > 0:
            seconds += time.perf_counter() - t0
            tokens += int(batch["attention_mask"].sum())
    return {"tokens": tokens, "step_seconds": seconds, "wall_seconds": time.perf_counter() - wall,
            "final_loss": loss.item()}


# ---- the project's path --------------------------------------------------------------------------

class FirstStep(TrainerCallback):
    """Tokens and seconds of the first optimizer step, which both paths leave out (warm-up)."""

    def __init__(self):
        self.tokens, self.seconds, self._t0 = 0, 0.0, None

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == 0:
            self._t0 = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 1 and self._t0 is not None:
            self.seconds, self.tokens, self._t0 = time.perf_counter() - self._t0, int(state.num_input_tokens_seen or 0), None


def project_path(args, data, bf16: bool, changes: dict | None = None, eval_data=None) -> dict:
    """:func:`mathkit.training.train` on the same examples in the same order (sequential sampling),
    one optimizer step per batch, no checkpoints; ``changes``: one lever's training-block keys."""
    model, tokenizer = lora_model(args)
    block = {"max_steps": len(data) // args.batch, "per_device_train_batch_size": args.batch,
             "gradient_accumulation_steps": 1, "learning_rate": args.lr, "warmup_steps": 0,
             "max_length": args.max_length, "bf16": bf16, "optim": "adamw_torch", "logging_steps": 1,
             "save_strategy": "no", "train_sampling_strategy": "sequential", "load_best_model_at_end": False,
             **(changes or {})}
    first = FirstStep()
    with tempfile.TemporaryDirectory() as folder:
        wall = time.perf_counter()
        result = train(model, tokenizer, data, eval_data if "eval_strategy" in block else None,
                       output_dir=folder, training=block, resume=False, callbacks=(first,))
        wall = time.perf_counter() - wall
    return {"tokens": result.train_tokens - first.tokens, "step_seconds": result.step_seconds - first.seconds,
            "wall_seconds": wall, "final_loss": result.final_train_loss}


# ---- running and reporting -----------------------------------------------------------------------

def speed(run: dict) -> dict:
    run["tokens_per_s"] = run["tokens"] / run["step_seconds"] if run["step_seconds"] > 0 else 0.0
    run["wall_tokens_per_s"] = run["tokens"] / run["wall_seconds"] if run["wall_seconds"] > 0 else 0.0
    return run


def line(name: str, threads: int, run: dict, plain: dict | None) -> str:
    ratio = f"{run['tokens_per_s'] / plain['tokens_per_s']:.2f}x" if plain and plain["tokens_per_s"] else "-"
    return (f"  {threads}  {name:<34} {run['tokens']:>7} {run['step_seconds']:>8.1f} {run['tokens_per_s']:>9.1f} "
            f"{run['wall_seconds']:>8.1f} {run['wall_tokens_per_s']:>9.1f}  {ratio:>6}")


def main(argv=None) -> dict:
    args = parse_args(argv)
    transcript = Transcript()
    say = transcript.say

    logging.basicConfig(level=logging.ERROR)
    for name in ("transformers", "trl", "mathkit", "peft"):
        logging.getLogger(name).setLevel(logging.ERROR)
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    bf16 = (args.precision == "bf16") if args.precision else cpu_supports_bf16()
    if bf16 and not cpu_supports_bf16():
        sys.exit("this CPU has no native bf16: the project's machine policy trains in fp32 here, so the two "
                 "paths would not run the same precision; compare with --precision fp32")
    _, tokenizer = load(args.model, dtype="float32")
    n = (args.steps + 1) * args.batch
    data = examples(tokenizer, n)
    eval_data = examples(tokenizer, 8, seed=1)
    command = "python " + " ".join([Path(sys.argv[0]).resolve().relative_to(REPO).as_posix()
                                    if Path(sys.argv[0]).resolve().is_relative_to(REPO) else sys.argv[0],
                                    *(argv if argv is not None else sys.argv[1:])])
    say(f"# {command}")
    say(f"{args.model}: LoRA r={args.rank} alpha={args.alpha:g} on every projection, batch {args.batch}, "
        f"{args.steps} timed optimizer steps after 1 warm-up step, {'bf16 autocast' if bf16 else 'fp32'}, "
        f"{n} GSM-Symbolic examples (gsm8k style, loss on the completion), same order in every run; "
        f"{os.cpu_count()} cores, native bf16: {cpu_supports_bf16()}, load average {os.getloadavg()[0]:.1f}")
    say("threads run                                tokens   step s  tokens/s   wall s  wall t/s  vs plain")
    runs: list[dict] = []
    for i, threads in enumerate(args.threads):
        set_threads(threads)
        seed_everything(0)
        plain = speed(plain_loop(args, data, bf16))
        runs.append({"threads": threads, "run": "plain PEFT + torch loop", **plain})
        say(line("plain PEFT + torch loop", threads, plain, None))
        variants = [("project path (training.train)", {})]
        if i == 0:
            variants += [(f"project + {lever}", LEVERS[lever]) for lever in args.levers]
        for name, changes in variants:
            seed_everything(0)
            run = speed(project_path(args, data, bf16, changes, eval_data))
            runs.append({"threads": threads, "run": name, "changes": changes, **run})
            say(line(name, threads, run, plain))
    say(f"load average after: {os.getloadavg()[0]:.1f}")
    out = {"command": command, "settings": {k: v for k, v in vars(args).items() if k != "save"},
           "bf16": bf16, "runs": runs}
    if args.save:
        transcript.save(args.save, out)
    return out


if __name__ == "__main__":
    main()
