"""Greedy generation on the offline SmolLM2-135M-Instruct: speed, and whether the batch changes answers.

Why: evaluation speed decides how many problems a CPU notebook can afford, and batching is how it
gets fast (one prompt at a time ~15 tokens/s, batches of 50-100 ~115-250). But batched greedy
decoding with left padding is only trustworthy if a prompt gets the same completion whatever batch
it sits in. This script runs the same prompts at batch 1 and at batch ``--batch-size`` (32), in
fp32 and under bf16 autocast, and prints side by side:

* tokens/s of each run and the batched / one-at-a-time speed-up;
* the **batch-invariance rate**: how many completions are identical at batch 1 and batch 32;
* how many completions (and extracted answers) bf16 shares with fp32, and the accuracy of each run.

    python benchmarks/generation_throughput.py                       # 32 prompts, 48 new tokens
    python benchmarks/generation_throughput.py --threads 2 --save benchmarks/results/generation_throughput_2cores

The runs are interleaved (fp32 batch 1, fp32 batched, bf16 batch 1, bf16 batched) so that a change in
machine load hits all of them alike; the load average is printed, since on a shared CPU it moves
every speed (never the completions: those depend only on the arithmetic).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch
import transformers

from transcript import Transcript  # noqa: E402  (benchmarks/ is on sys.path when run as a script)
from mathkit.data import load_math_dataset
from mathkit.data.formatting import build_prompt
from mathkit.env import cpu_supports_bf16, seed_everything
from mathkit.evaluation.answer_scoring import score_completion
from mathkit.evaluation.generation import generate_batched
from mathkit.evaluation.metrics import accuracy_summary, format_interval
from mathkit.models import load

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--dataset", default="gsm8k_originals")
    ap.add_argument("--n", type=int, default=32, help="prompts (all run at batch 1 and batched)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--style", default="gsm8k")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads (default: torch's); 1 is faster while others load the CPU")
    ap.add_argument("--dtypes", default="fp32,bf16", help="comma-separated: fp32, bf16")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save", metavar="PREFIX", help="write PREFIX.json and PREFIX.txt")
    return ap.parse_args(argv)


def parse_dtypes(requested: str) -> list[str]:
    dtypes = [d.strip() for d in requested.split(",") if d.strip()]
    if not dtypes or set(dtypes) - {"fp32", "bf16"}:
        raise SystemExit(f"--dtypes takes fp32 and/or bf16, got {requested!r}")
    return dtypes


def run_all(model, tokenizer, prompts, dtypes, args, say) -> dict:
    """Every (dtype, batch size) run on the same prompts, interleaved."""
    runs = {}
    for dtype in dtypes:
        for batch in (1, args.batch_size):
            gen = generate_batched(model, tokenizer, prompts, batch_size=batch, bf16=dtype == "bf16",
                                   max_new_tokens=args.max_new_tokens, progress=False)
            runs[(dtype, batch)] = gen
            say(f"  {dtype:5s} batch {batch:3d}: {len(prompts)} prompts {sum(gen.new_tokens):6d} tokens "
                f"{gen.seconds:7.1f} s  {gen.tokens_per_second:7.1f} tokens/s")
    return runs


def identical(a: list[str], b: list[str]) -> int:
    return sum(x == y for x, y in zip(a, b))


def compare_runs(runs, rows, dtypes, batch, say) -> dict:
    """Speed-ups, batch invariance, bf16 vs fp32 agreement and accuracy, printed and returned."""
    out: dict = {}
    n = len(rows)
    answers = {key: [score_completion(c, str(r["answer"]), finished=f)
                     for c, f, r in zip(g.completions, g.finished, rows)] for key, g in runs.items()}
    say(f"\nbatch {batch} / batch 1 (tokens/s) and batch invariance (identical completions):")
    for dtype in dtypes:
        single, batched = runs[(dtype, 1)], runs[(dtype, batch)]
        same = identical(single.completions, batched.completions)
        out[f"speedup_batch{batch}_{dtype}"] = batched.tokens_per_second / single.tokens_per_second
        out[f"batch_invariant_{dtype}"] = {"identical": same, "n": n}
        say(f"  {dtype}: {out[f'speedup_batch{batch}_{dtype}']:.1f}x faster; identical at batch 1 and "
            f"batch {batch}: {same}/{n}")
    if "fp32" in dtypes and "bf16" in dtypes:
        say("bf16 vs fp32 at the same batch size:")
        for b in (1, batch):
            same = identical(runs[("fp32", b)].completions, runs[("bf16", b)].completions)
            same_answer = sum(x["extracted"] == y["extracted"]
                              for x, y in zip(answers[("fp32", b)], answers[("bf16", b)]))
            out[f"bf16_vs_fp32_batch{b}"] = {"identical": same, "same_answer": same_answer, "n": n}
            say(f"  batch {b:3d}: identical completions {same}/{n}, same extracted answer {same_answer}/{n}")
        speed = runs[("bf16", batch)].tokens_per_second / runs[("fp32", batch)].tokens_per_second
        out[f"speedup_bf16_batch{batch}"] = speed
        say(f"  bf16 / fp32 speed at batch {batch}: {speed:.2f}x")
    say("accuracy (lenient, gradable golds) of each run:")
    for (dtype, b), scored in answers.items():
        acc = accuracy_summary(s["correct"] for s in scored)
        out[f"accuracy_{dtype}_batch{b}"] = acc
        say(f"  {dtype:5s} batch {b:3d}: {format_interval(acc)}")
    return out


def main(argv=None) -> dict:
    args = parse_args(argv)
    transcript = Transcript()
    say = transcript.say

    seed_everything(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    dtypes = parse_dtypes(args.dtypes)
    model, tokenizer = load(args.model, device="cpu")
    rows = load_math_dataset(args.dataset, n=args.n, seed=args.seed).to_list()
    prompts = [build_prompt(tokenizer, r["problem"], style=args.style) for r in rows]
    load_before = os.getloadavg()[0]
    command = " ".join(["python", str(Path(__file__).resolve().relative_to(REPO)),
                        *(sys.argv[1:] if argv is None else argv)])
    say(f"# {command}")
    say(f"{args.model} on {args.dataset}: {len(prompts)} prompts, greedy, at most {args.max_new_tokens} "
        f"new tokens, left padding; torch threads {torch.get_num_threads()} of {os.cpu_count()} cores, "
        f"load average {load_before:.1f}")
    if "bf16" in dtypes and not (cpu_supports_bf16() or torch.cuda.is_available()):
        say("note: this CPU has no native bf16 (avx512_bf16/AMX): bf16 autocast runs emulated, so its "
            "speed is not representative; its completions are what bf16 gives here")
    runs = run_all(model, tokenizer, prompts, dtypes, args, say)
    out = {"command": command, "settings": {k: v for k, v in vars(args).items() if k != "save"},
           "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
           "native_bf16": cpu_supports_bf16(), "torch": torch.__version__,
           "transformers": transformers.__version__, "load_average_before": load_before,
           "runs": {f"{d}_batch{b}": {"prompts": len(g.new_tokens), "new_tokens": sum(g.new_tokens),
                                      "seconds": g.seconds, "tokens_per_second": g.tokens_per_second,
                                      "truncated": sum(not f for f in g.finished)}
                    for (d, b), g in runs.items()}}
    out.update(compare_runs(runs, rows, dtypes, args.batch_size, say))
    out["load_average_after"] = os.getloadavg()[0]
    say(f"load average after: {out['load_average_after']:.1f}")
    out["examples"] = [{"id": r["id"], "gold": str(r["answer"]),
                        **{f"{d}_batch{b}": runs[(d, b)].completions[i] for d, b in runs}}
                       for i, r in enumerate(rows)]
    if args.save:
        transcript.save(args.save, out)
    return out


if __name__ == "__main__":
    main()
