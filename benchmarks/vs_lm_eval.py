"""The same GSM8K work in lm-evaluation-harness and in mathkit: wall time, tokens/s and accuracy.

A user choosing between the two tools runs the same model on the same problems with the same
prompt and stop strings. This script does exactly that, in one process and one after the other:

* **lm-eval**: lm-evaluation-harness's ``hf`` backend, its ``gsm8k`` task (prompt
  ``Question: {question}\\nAnswer:``, stop at ``Question:``, ``</s>``, ``<|im_end|>``, strict and
  flexible match) run zero-shot in the chat template on our problems (the task's yaml with the
  data read from a local file instead of the hub);
* **mathkit, same stops**: :func:`mathkit.evaluation.evaluator.evaluate_model` with the style
  ``lm_eval_gsm8k`` (the harness's prompt, checked string for string against the prompts the
  harness sent) and the harness's stop strings only;
* **mathkit, default**: the same plus mathkit's default answer end (stop after a ``#### n`` or
  boxed answer line).

Both tools get the same model object (fp32 by default), greedy decoding, the same token budget,
batch size and threads. Printed side by side: wall time, new tokens (each tool's kept completions
re-tokenized alike), tokens/s, the harness's accuracies, mathkit's scorer on every run's
completions, how many completions are identical, and each ratio to lm-eval.

Install the harness into the project's environment first; it is a benchmark-only dependency,
not in requirements.txt (0.4.13 was measured):

    .venv/bin/pip install lm-eval==0.4.13
    python benchmarks/vs_lm_eval.py --threads 2 --save benchmarks/results/vs_lm_eval_cpu
    python benchmarks/vs_lm_eval.py --n 30 --max-new-tokens 128     # a quicker look
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

from transcript import save_outputs  # noqa: E402  (benchmarks/ is on sys.path when run as a script)
from mathkit.data import load_math_dataset
from mathkit.data.formatting import LM_EVAL_GSM8K, STYLE_STOP_STRINGS, build_prompt
from mathkit.env import seed_everything, set_threads
from mathkit.evaluation.answer_scoring import score_completion
from mathkit.evaluation.evaluator import evaluate_model
from mathkit.models import load

TASK = "gsm8k_mathkit_local"


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--dataset", default="gsm8k_originals")
    ap.add_argument("--n", type=int, default=None, help="problems (default: all 100)")
    ap.add_argument("--batch-size", type=int, default=32, help="lm-eval's batch size")
    ap.add_argument("--mathkit-batch-sizes", default="",
                    help="comma-separated batch sizes for mathkit's same-stops runs (default: --batch-size); "
                         "the answer-end run uses the last one")
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--bf16", action="store_true",
                    help="both tools under bf16 autocast (only where the CPU has avx512_bf16)")
    ap.add_argument("--skip", default="", help="comma-separated runs to skip: lm_eval, same_stops, default")
    ap.add_argument("--save", metavar="PREFIX", help="write PREFIX.txt and PREFIX.json")
    return ap.parse_args(argv)


# ---- lm-evaluation-harness -----------------------------------------------------------------

def write_task(rows, folder: Path) -> None:
    """The harness's gsm8k task, zero-shot, with its documents read from a local JSONL file."""
    import lm_eval

    gsm8k_yaml = Path(lm_eval.__file__).parent / "tasks" / "gsm8k" / "gsm8k.yaml"
    config = yaml.safe_load(gsm8k_yaml.read_text())
    docs = folder / "docs.jsonl"
    docs.write_text("".join(json.dumps({"question": r["problem"],
                                        "answer": f"{r.get('solution') or ''}\n#### {r['answer']}"}) + "\n"
                            for r in rows))
    config.update(task=TASK, dataset_path="json", dataset_name=None,
                  dataset_kwargs={"data_files": {"test": str(docs)}}, test_split="test",
                  training_split=None, fewshot_split=None, num_fewshot=0)
    config.pop("tag", None)
    (folder / f"{TASK}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def run_lm_eval(model, tokenizer, rows, args) -> dict:
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    with tempfile.TemporaryDirectory() as tmp:
        write_task(rows, Path(tmp))
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=args.batch_size,
                  mixed_precision_dtype=torch.bfloat16 if args.bf16 else None)
        generate_until, spent = lm.generate_until, []

        def timed_generate_until(requests, *a, **kw):  # the harness's generation alone
            t = time.perf_counter()
            try:
                return generate_until(requests, *a, **kw)
            finally:
                spent.append(time.perf_counter() - t)

        lm.generate_until = timed_generate_until
        t0 = time.perf_counter()
        out = simple_evaluate(model=lm, tasks=[TASK], num_fewshot=0, apply_chat_template=True,
                              gen_kwargs={"max_gen_toks": args.max_new_tokens}, log_samples=True,
                              task_manager=TaskManager(include_path=tmp), bootstrap_iters=0)
        seconds = time.perf_counter() - t0
    # one sample per document and filter: the raw response is the same under both filters
    samples = sorted((s for s in out["samples"][TASK] if s.get("filter") == "strict-match"),
                     key=lambda s: s["doc_id"])
    metrics = out["results"][TASK]
    return {"seconds": seconds, "generation_seconds": sum(spent),
            "prompts": [s["arguments"]["gen_args_0"]["arg_0"] if isinstance(s["arguments"], dict)
                        else s["arguments"][0][0] for s in samples],
            "completions": [s["resps"][0][0] for s in samples],
            "strict": round(metrics["exact_match,strict-match"] * len(samples)),
            "flexible": round(metrics["exact_match,flexible-extract"] * len(samples))}


# ---- mathkit -------------------------------------------------------------------------------

def run_mathkit(model, tokenizer, rows, args, *, stop_at_answer: bool, batch_size: int) -> dict:
    t0 = time.perf_counter()
    result = evaluate_model(model, tokenizer, rows, style=LM_EVAL_GSM8K, batch_size=batch_size,
                            max_new_tokens=args.max_new_tokens, bf16=args.bf16,
                            stop_at_answer=stop_at_answer, progress=False)
    s = result.summary
    return {"seconds": time.perf_counter() - t0, "generation_seconds": s["generation_seconds"],
            "completions": [r["completion"] for r in result.records],
            "own_new_tokens": s["new_tokens"], "stopped_early": s["stopped_early"],
            "decoder": s["decoder"], "slot_use": s["slot_use"], "truncated": s["truncated"],
            "batch_size": batch_size}


def matmul_gflops(threads: int, size: int = 1024, repeats: int = 20) -> float:
    """fp32 matmul speed of this CPU at the benchmark's threads: the compute bound's numerator."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size ** 3 * repeats / (time.perf_counter() - t0) / 1e9


# ---- comparison ----------------------------------------------------------------------------

def score(run: dict, rows, tokenizer) -> None:
    """mathkit's scorer and a common token count on a run's completions (in place)."""
    scored = [score_completion(c, str(r["answer"])) for c, r in zip(run["completions"], rows)]
    run["mathkit_lenient"] = sum(bool(s["correct"]) for s in scored)
    run["mathkit_strict"] = sum(bool(s["correct_strict"]) for s in scored)
    run["new_tokens"] = sum(len(tokenizer(c, add_special_tokens=False)["input_ids"])
                            for c in run["completions"])
    gen = run["generation_seconds"]
    run["tokens_per_second"] = run["new_tokens"] / gen if gen else 0.0


def table(runs: dict, n: int) -> list[str]:
    base = runs.get("lm_eval")
    lines = [f"{'run':<22}{'wall s':>9}{'x lm-eval':>10}{'gen s':>8}{'new tok':>9}{'tok/s':>8}"
             f"{'harness strict/flex':>21}{'mathkit strict/lenient':>24}{'same text':>11}{'GFLOP/s before':>16}"]
    for name, r in runs.items():
        speedup = f"{base['seconds'] / r['seconds']:.2f}" if base else "-"
        harness = f"{r['strict']}/{r['flexible']}" if "strict" in r else "-"
        same = (sum(a == b for a, b in zip(r["completions"], base["completions"])) if base else "-")
        lines.append(f"{name:<22}{r['seconds']:>9.1f}{speedup:>10}{r['generation_seconds']:>8.1f}{r['new_tokens']:>9}"
                     f"{r['tokens_per_second']:>8.1f}{harness:>21}"
                     f"{str(r['mathkit_strict']) + '/' + str(r['mathkit_lenient']):>24}"
                     f"{str(same) + '/' + str(n):>11}{r['matmul_gflops_before']:>16.0f}")
    return lines


def main(argv=None) -> int:
    args = parse_args(argv)
    seed_everything(0)
    threads = set_threads(args.threads)
    model, tokenizer = load(args.model, dtype=torch.float32)
    rows = load_math_dataset(args.dataset, n=args.n).to_list()
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    runs: dict[str, dict] = {}
    speed = {}  # this CPU's matmul speed just before each run: a shared machine's speed drifts
    if "lm_eval" not in skip:
        speed["lm_eval"] = matmul_gflops(threads)
        runs["lm_eval"] = run_lm_eval(model, tokenizer, rows, args)
        ours = [build_prompt(tokenizer, r["problem"], style=LM_EVAL_GSM8K) for r in rows]
        same_prompts = sum(a == b for a, b in zip(ours, runs["lm_eval"].pop("prompts")))
        if same_prompts != len(rows):
            print(f"prompts differ: {len(rows) - same_prompts} of {len(rows)}", file=sys.stderr)
            return 1
    sizes = [int(b) for b in args.mathkit_batch_sizes.split(",") if b.strip()] or [args.batch_size]
    if "same_stops" not in skip:
        for b in sizes:
            speed[f"mathkit_same_stops_b{b}"] = matmul_gflops(threads)
            runs[f"mathkit_same_stops_b{b}"] = run_mathkit(model, tokenizer, rows, args, stop_at_answer=False,
                                                           batch_size=b)
    if "default" not in skip:
        speed[f"mathkit_default_b{sizes[-1]}"] = matmul_gflops(threads)
        runs[f"mathkit_default_b{sizes[-1]}"] = run_mathkit(model, tokenizer, rows, args, stop_at_answer=True,
                                                           batch_size=sizes[-1])
    for name, run in runs.items():
        score(run, rows, tokenizer)
        run["matmul_gflops_before"] = speed[name]
    head = [f"{args.model}, {args.dataset} ({len(rows)} problems), {'bf16 autocast' if args.bf16 else 'fp32'}, "
            f"greedy, {args.max_new_tokens} new tokens at most, lm-eval batch {args.batch_size} (mathkit's "
            f"in each run's name), {threads} threads, "
            f"load average before/after: {LOAD_BEFORE} / {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
            f"prompt: lm-eval gsm8k 'Question: ...\\nAnswer:' in the chat template (identical in both tools), "
            f"stop strings {list(STYLE_STOP_STRINGS[LM_EVAL_GSM8K])}",
            "wall s: the whole evaluation call; gen s: generation alone; tok/s: new tok / gen s; new tok: each "
            "run's kept completions re-tokenized alike; accuracies are counts of problems; GFLOP/s before: a "
            "1024x1024 fp32 matmul timed just before the run (the machine's speed then)", ""]
    head += table(runs, len(rows))
    for name, r in runs.items():
        if name.startswith("mathkit"):
            head.append(f"{name}: decoder {r['decoder']}, {r['stopped_early']} stopped at a stop string "
                        f"or answer end, {r['truncated']} cut at the token limit, slot use {r['slot_use']:.2f}")
    gflops = matmul_gflops(threads)
    per_token = 2 * sum(p.numel() for p in model.parameters()) / 1e9  # tied head: its matmul counted once
    bound = gflops / per_token
    head.append(f"compute bound: fp32 matmul {gflops:.0f} GFLOP/s at {threads} threads / {per_token:.2f} GFLOP "
                f"per token = {bound:.0f} tokens/s; " + "; ".join(
                    f"{name} {100 * r['tokens_per_second'] / bound:.0f}%" for name, r in runs.items()))
    text = "\n".join(head)
    print(text)
    if args.save:
        save_outputs(args.save, head, {"args": vars(args), "threads": threads, "runs": runs})
    return 0


LOAD_BEFORE = " ".join(f"{x:.2f}" for x in os.getloadavg())

if __name__ == "__main__":
    raise SystemExit(main())
