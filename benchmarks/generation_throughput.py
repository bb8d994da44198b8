"""Batched vs one-at-a-time greedy generation, fp32 vs bf16, on the offline SmolLM2-135M-Instruct.

Why: evaluation speed decides how many problems a CPU notebook can afford. PITFALLS measured
~249 tokens/s for batch 100 in bf16 and ~15 for one prompt at a time; this script measures both
side by side in one run on the same GSM8K prompts, and checks that bf16 autocast keeps the
answers of fp32 (same extracted answer per problem) before anyone adopts it for evaluation.

    python benchmarks/generation_throughput.py                 # 50 problems, 4 one at a time
    python benchmarks/generation_throughput.py --n 100 --batch-size 100 --json out.json

The runs are interleaved (fp32 single, fp32 batched, bf16 single, bf16 batched) so that a
change in machine load hits all of them alike; the load average is printed before and after,
since on a shared CPU it moves every number.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

from mathkit.evaluation.answers import extract_answer, is_correct
from mathkit.data import load_math_dataset
from mathkit.data.formatting import build_prompt
from mathkit.env import cpu_supports_bf16, seed_everything
from mathkit.evaluation.generation import generate_batched
from mathkit.evaluation.metrics import accuracy_summary
from mathkit.models.base import load_base_model


def run(model, tokenizer, prompts, *, batch_size, max_new_tokens, bf16):
    t0 = time.perf_counter()
    gen = generate_batched(model, tokenizer, prompts, batch_size=batch_size, bf16=bf16,
                           max_new_tokens=max_new_tokens, progress=False)
    return {"gen": gen, "wall": time.perf_counter() - t0}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--dataset", default="gsm8k_originals")
    ap.add_argument("--n", type=int, default=50, help="problems for the batched runs")
    ap.add_argument("--n-single", type=int, default=4, help="of those, generated one at a time")
    ap.add_argument("--batch-size", type=int, default=50)
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--style", default="gsm8k")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads (default: torch's); 1 is faster while others load the CPU")
    ap.add_argument("--dtypes", default="fp32,bf16", help="comma-separated: fp32, bf16")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="write all numbers to this file")
    args = ap.parse_args(argv)

    seed_everything(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    model, tokenizer = load_base_model(args.model)
    ds = load_math_dataset(args.dataset, n=args.n, seed=args.seed)
    prompts = [build_prompt(tokenizer, p, style=args.style) for p in ds["problem"]]
    golds = [str(a) for a in ds["answer"]]
    single_prompts = prompts[:args.n_single]
    bf16_ok = cpu_supports_bf16() or torch.cuda.is_available()
    dtypes = [d for d in args.dtypes.split(",") if d == "fp32" or (d == "bf16" and bf16_ok)]
    if not dtypes:
        ap.error(f"no usable dtype in {args.dtypes!r} (bf16 needs avx512_bf16/AMX or a GPU)")
    load_before = os.getloadavg()
    print(f"{args.model} on {args.dataset}: {len(prompts)} prompts, max_new_tokens "
          f"{args.max_new_tokens}, batch {args.batch_size}, torch threads "
          f"{torch.get_num_threads()}, load average {load_before[0]:.1f} (cpu count "
          f"{os.cpu_count()})")

    runs = {}
    for dtype in dtypes:
        bf16 = dtype == "bf16"
        runs[(dtype, "single")] = run(model, tokenizer, single_prompts, batch_size=1,
                                      max_new_tokens=args.max_new_tokens, bf16=bf16)
        runs[(dtype, "batched")] = run(model, tokenizer, prompts, batch_size=args.batch_size,
                                       max_new_tokens=args.max_new_tokens, bf16=bf16)
        for mode in ("single", "batched"):
            g = runs[(dtype, mode)]["gen"]
            print(f"  {dtype:5s} {mode:8s} {len(g.new_tokens):4d} prompts {sum(g.new_tokens):6d} "
                  f"tokens {g.seconds:7.1f} s  {g.tokens_per_second:7.1f} tokens/s", flush=True)
    load_after = os.getloadavg()

    out: dict = {"settings": vars(args), "torch_threads": torch.get_num_threads(),
                 "load_average_before": load_before[0], "load_average_after": load_after[0],
                 "cpu_count": os.cpu_count(), "runs": {}}
    for (dtype, mode), r in runs.items():
        g = r["gen"]
        out["runs"][f"{dtype}_{mode}"] = {"prompts": len(g.new_tokens), "new_tokens": sum(g.new_tokens),
                                          "seconds": g.seconds,
                                          "tokens_per_second": g.tokens_per_second}
    print("\nbatched / one-at-a-time (tokens/s):")
    for dtype in dtypes:
        ratio = (runs[(dtype, "batched")]["gen"].tokens_per_second
                 / runs[(dtype, "single")]["gen"].tokens_per_second)
        out[f"speedup_batched_{dtype}"] = ratio
        same = sum(a == b for a, b in zip(runs[(dtype, "single")]["gen"].completions,
                                          runs[(dtype, "batched")]["gen"].completions))
        out[f"single_vs_batched_same_completion_{dtype}"] = same
        print(f"  {dtype}: {ratio:.1f}x   (identical completions single vs batched: "
              f"{same}/{len(single_prompts)})")

    answers = {}
    for dtype in dtypes:
        comps = runs[(dtype, "batched")]["gen"].completions
        answers[dtype] = [extract_answer(c) for c in comps]
        acc = accuracy_summary([is_correct(a, g) for a, g in zip(answers[dtype], golds)])
        out[f"accuracy_{dtype}"] = acc
        print(f"accuracy {dtype}: {acc['accuracy']:.3f} [{acc['ci95'][0]:.3f}, "
              f"{acc['ci95'][1]:.3f}] n={acc['n']}")
    if "bf16" in answers and "fp32" in answers:
        fp32_tps = runs[("fp32", "batched")]["gen"].tokens_per_second
        bf16_tps = runs[("bf16", "batched")]["gen"].tokens_per_second
        same_answer = sum(a == b for a, b in zip(answers["fp32"], answers["bf16"]))
        same_text = sum(a == b for a, b in zip(runs[("fp32", "batched")]["gen"].completions,
                                               runs[("bf16", "batched")]["gen"].completions))
        out.update({"speedup_bf16_batched": bf16_tps / fp32_tps,
                    "bf16_fp32_same_answer": same_answer, "bf16_fp32_same_completion": same_text,
                    "n": len(prompts)})
        print(f"bf16 / fp32 batched: {bf16_tps / fp32_tps:.2f}x; same extracted answer "
              f"{same_answer}/{len(prompts)}, identical completion {same_text}/{len(prompts)}")
    out["examples"] = [{"gold": g, **{f"{d}_answer": answers[d][i] for d in dtypes},
                        **{f"{d}_completion": runs[(d, "batched")]["gen"].completions[i]
                           for d in dtypes}}
                       for i, g in enumerate(golds)]
    print(f"load average after: {load_after[0]:.1f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2, default=str)
    return out


if __name__ == "__main__":
    main()
