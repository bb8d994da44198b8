"""Edge inference side by side: torch eager, ONNX Runtime fp32 and int8, llama.cpp Q8_0 / Q4_K_M.

Why: the issue promises models that can be "quantized and exported" for small devices, with int8
at least 2x faster than torch eager and at most a quarter of its size, and accuracy within 1 point
(arithmetic) or within the fp32 interval (SmolLM2). This script measures each backend on the same
held-out set, through the same evaluator (:func:`mathkit.evaluation.evaluator.evaluate_model`, greedy):

* exact-match accuracy with its Wilson interval, and how many completions equal torch's;
* file size (torch: the safetensors weights);
* latency per answer and tokens/s one prompt at a time (the first ``--n-single`` prompts), and
  tokens/s batched (every prompt, ``--batch-size``);
* peak resident memory of the run (load + generation), each backend in its own process so that
  one's freed memory never hides in the next one's peak.

Two models: notebook 01's arithmetic model (``reports/01_arithmetic_cot/model``) on held-out
arithmetic records of its own format, and SmolLM2-135M-Instruct on the 100 GSM8K originals.
Exports are written once under ``--export-dir`` and reused. llama.cpp runs where ``llama_cpp``
is importable (``pip install mathkit[edge]``), for SmolLM2 only (GGUF has no mathkit_decoder).

    python benchmarks/edge_inference.py --quick                 # a check: small n, a few minutes
    python benchmarks/edge_inference.py --write                 # the full run; writes
                                                                # benchmarks/results/edge_inference_cpu.{txt,json}

Run the full one on a quiet machine; the load average is printed before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from transcript import Transcript  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

REPO = Path(__file__).resolve().parents[1]
MARKER = "RESULT-JSON "
RESULTS = REPO / "benchmarks" / "results" / "edge_inference_cpu"
ARITHMETIC_CHECKPOINT = REPO / "reports" / "01_arithmetic_cot" / "model"
MiB = 2**20

# (name, backend, load_backend keywords); the first is the reference the others are compared with
BACKENDS = [
    ("torch eager", "torch", {}),
    ("onnx fp32", "onnx", {"variant": "fp32"}),
    ("onnx int8", "onnx", {"variant": "int8"}),
    ("llama.cpp Q8_0", "llama_cpp", {"quantization": "Q8_0"}),
    ("llama.cpp Q4_K_M", "llama_cpp", {"quantization": "Q4_K_M"}),
]
SIZES = {  # model -> full run, --quick run
    "arithmetic": {"full": {"n": 500, "n_single": 50}, "quick": {"n": 24, "n_single": 4}},
    "smollm2": {"full": {"n": 100, "n_single": 10}, "quick": {"n": 4, "n_single": 1}},
}


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="arithmetic,smollm2", help="comma-separated: arithmetic, smollm2")
    ap.add_argument("--quick", action="store_true", help="a check: few prompts, short completions")
    ap.add_argument("--write", action="store_true", help=f"write {RESULTS.relative_to(REPO)}.{{txt,json}}")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                    help="threads for every backend (torch, ONNX Runtime, llama.cpp; default: all cores)")
    ap.add_argument("--batch-size", type=int, default=50)
    ap.add_argument("--max-new-tokens", type=int, default=None,
                    help="SmolLM2's budget (default 256, --quick 32); arithmetic: the scorer's")
    ap.add_argument("--export-dir", default=str(REPO / "runs" / "edge_inference"),
                    help="where exports are written once and reused")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one case in this process
    return ap.parse_args(argv)


# ---- one case, in its own process -------------------------------------------------------------

def _task(model: str, n: int, seed: int):
    """Rows and scorer of the held-out set."""
    if model == "arithmetic":
        from mathkit.data.arithmetic import load_arithmetic_records
        from mathkit.evaluation.arithmetic_scoring import ArithmeticScorer
        from mathkit.models.io import read_side_config

        fmt = read_side_config(ARITHMETIC_CHECKPOINT, "arithmetic_format") or {}
        spec = f"arithmetic:{fmt.get('min_digits', 1)}-{fmt.get('max_digits', 3)}:{''.join(fmt.get('ops', ['+']))}"
        # the teacher-forced token accuracy needs full logits, which the exports do not return
        return load_arithmetic_records(spec, n, seed), ArithmeticScorer(token_accuracy=False)
    from mathkit.data import load_math_dataset
    from mathkit.evaluation.answer_scoring import MathAnswerScorer

    return load_math_dataset("gsm8k_originals", n=n, seed=seed).to_list(), MathAnswerScorer()  # rows, not columns, when sliced


def _file_mb(path: Path, backend: str, model) -> float:
    if backend == "torch":
        folder = Path(model.name_or_path)
        return sum(f.stat().st_size for f in folder.glob("*.safetensors")) / MiB
    if backend == "onnx":
        return model.file_bytes / MiB
    return Path(getattr(model, "path", path)).stat().st_size / MiB


def run_case(case: dict) -> dict:
    """Load one backend, evaluate batched and one at a time; sizes, speeds, memory, completions."""
    import torch

    from mathkit.evaluation.evaluator import evaluate_model
    from mathkit.inference import load_backend
    from mathkit.memory import track_peak_memory

    torch.set_num_threads(case["threads"])
    rows, scorer = _task(case["model"], case["n"], case["seed"])
    with track_peak_memory() as memory:
        t0 = time.perf_counter()
        kwargs = {"device": "cpu"} if case["backend"] == "torch" else {"threads": case["threads"]}
        if case["backend"] == "onnx":
            kwargs["variant"] = case["variant"]
        model, tokenizer = load_backend(case["path"], case["backend"], **kwargs)
        load_seconds = time.perf_counter() - t0
        common = {"scorer": scorer, "max_new_tokens": case["max_new_tokens"], "progress": False}
        batched = evaluate_model(model, tokenizer, rows, batch_size=case["batch_size"], **common)
        single = evaluate_model(model, tokenizer, rows[:case["n_single"]], batch_size=1, **common)
    s, one = batched.summary, single.summary
    return {
        "name": case["name"], "backend": case["backend"], "path": str(case["path"]),
        "file_mb": round(_file_mb(Path(case["path"]), case["backend"], model), 1),
        "load_seconds": round(load_seconds, 2),
        "accuracy": {k: s[k] for k in ("accuracy", "correct", "n", "ci95")},
        "batched": {"tokens_per_second": round(s["tokens_per_second"], 2), "new_tokens": s["new_tokens"],
                    "seconds": round(s["generation_seconds"], 2), "batch_size": case["batch_size"]},
        "single": {"tokens_per_second": round(one["tokens_per_second"], 2), "new_tokens": one["new_tokens"],
                   "seconds": round(one["generation_seconds"], 2), "n": one["n"],
                   "latency_per_answer_s": round(one["generation_seconds"] / one["n"], 3)},
        "peak_rss_mb": memory.as_dict(),
        "completions": [r["completion"] for r in batched.records],
    }


def child(case: dict) -> dict:
    """Run ``case`` in a fresh process (clean memory peak) and read its result line."""
    run = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--case", json.dumps(case)],
                         capture_output=True, text=True, cwd=REPO)
    found = [line for line in run.stdout.splitlines() if line.startswith(MARKER)]
    if run.returncode or not found:
        tail = "\n".join(run.stderr.strip().splitlines()[-5:])
        return {"name": case["name"], "error": tail or f"exit {run.returncode}"}
    return json.loads(found[-1].removeprefix(MARKER))


# ---- exports --------------------------------------------------------------------------------

def llama_cpp_available() -> bool:
    from mathkit.export.targets import llama_cpp_missing

    return llama_cpp_missing() is None


def ensure_exports(model: str, root: Path, say) -> dict[str, dict]:
    """The path of each export of ``model`` (:func:`mathkit.export.targets.export_targets`, reusing
    what an earlier run left under ``root``: the models benchmarked here do not change)."""
    from mathkit.export.onnx_export import read_manifest
    from mathkit.export.targets import GGUF_QUANTIZATION, export_targets

    checkpoint = str(ARITHMETIC_CHECKPOINT) if model == "arithmetic" else "smollm2-135m-instruct"
    targets = ["onnx_fp32", "onnx_int8"] + (["gguf_q8_0", "gguf_q4_k_m"] if model == "smollm2" else [])
    exports, skipped = export_targets(checkpoint, root / model, targets, reuse=True)
    paths: dict[str, dict] = {"torch": {"path": checkpoint}}
    for export in exports:
        if export.export_seconds is not None:
            say(f"  exported {model} as {export.name} in {export.export_seconds:.0f} s")
        if export.backend == "onnx":
            paths["onnx"] = {"path": export.path, "manifest": read_manifest(export.path)}
        else:
            paths[f"llama_cpp:{GGUF_QUANTIZATION[export.name]}"] = {"path": export.path}
    for name, why in skipped.items():
        say(f"  {name} skipped: {why}")
    return paths


# ---- the comparison -------------------------------------------------------------------------

def _cases(model: str, paths: dict, args) -> list[dict]:
    size = SIZES[model]["quick" if args.quick else "full"]
    budget = None if model == "arithmetic" else (args.max_new_tokens or (32 if args.quick else 256))
    cases = []
    for name, backend, options in BACKENDS:
        key = f"llama_cpp:{options['quantization']}" if backend == "llama_cpp" else backend
        if key not in paths:
            continue
        cases.append({"name": name, "model": model, "backend": backend, "variant": options.get("variant"),
                      "path": paths[key]["path"], "threads": args.threads, "batch_size": args.batch_size,
                      "max_new_tokens": budget, "seed": args.seed, **size})
    return cases


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "-"


def compare(model: str, runs: list[dict], say) -> None:
    from mathkit.evaluation.metrics import format_interval

    ok = [r for r in runs if "error" not in r]
    for r in runs:
        if "error" in r:
            say(f"  {r['name']}: FAILED: {r['error']}")
    if not ok:
        return
    ref = ok[0]
    say(f"  {'backend':18} {'size MiB':>9} {'accuracy':>34} {'same as torch':>13} {'s/answer':>9} "
        f"{'tok/s 1x1':>10} {'tok/s batch':>12} {'peak MiB':>9}")
    for r in ok:
        same = sum(a == b for a, b in zip(r["completions"], ref["completions"]))
        say(f"  {r['name']:18} {r['file_mb']:9.1f} {format_interval(r['accuracy']):>34} "
            f"{same:>6}/{len(ref['completions']):<6} {r['single']['latency_per_answer_s']:9.3f} "
            f"{r['single']['tokens_per_second']:10.1f} {r['batched']['tokens_per_second']:12.1f} "
            f"{r['peak_rss_mb']['cpu_peak_rss_mb']:9.0f}")
    say(f"  ratios to {ref['name']} (speed: higher is faster; size and memory: lower is smaller):")
    for r in ok[1:]:
        lo, hi = ref["accuracy"]["ci95"]
        inside = lo - 1e-9 <= r["accuracy"]["accuracy"] <= hi + 1e-9  # the bounds carry rounding error
        say(f"    {r['name']:18} speed 1x1 {_ratio(r['single']['tokens_per_second'], ref['single']['tokens_per_second'])}"
            f", batched {_ratio(r['batched']['tokens_per_second'], ref['batched']['tokens_per_second'])}"
            f"; size {_ratio(r['file_mb'], ref['file_mb'])}"
            f"; peak memory {_ratio(r['peak_rss_mb']['cpu_peak_rss_mb'], ref['peak_rss_mb']['cpu_peak_rss_mb'])}"
            f"; accuracy {100 * (r['accuracy']['accuracy'] - ref['accuracy']['accuracy']):+.1f} points"
            f" ({'inside' if inside else 'outside'} torch's interval)")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.case:
        print(MARKER + json.dumps(run_case(json.loads(args.case))), flush=True)
        return 0
    import onnxruntime
    import torch

    from mathkit.env import cpu_model

    out = Transcript()
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = set(models) - set(SIZES)
    if unknown:
        raise SystemExit(f"unknown model(s) {sorted(unknown)}: use arithmetic, smollm2")
    out.say(f"# python benchmarks/edge_inference.py {' '.join(argv if argv is not None else sys.argv[1:])}")
    out.say(f"{cpu_model()}; {args.threads} threads per backend; torch {torch.__version__}, onnxruntime "
            f"{onnxruntime.__version__}; llama_cpp {'present' if llama_cpp_available() else 'absent (skipped)'}; "
            f"load average {os.getloadavg()[0]:.1f}")
    data: dict = {"args": {k: v for k, v in vars(args).items() if k != "case"}, "models": {}}
    for model in models:
        label = ("notebook 01's arithmetic model on held-out records" if model == "arithmetic"
                 else "SmolLM2-135M-Instruct on the GSM8K originals")
        out.say(f"\n{label}:")
        paths = ensure_exports(model, Path(args.export_dir), out.say)
        runs = [child(case) for case in _cases(model, paths, args)]
        compare(model, runs, out.say)
        int8 = paths["onnx"]["manifest"]["variants"].get("int8", {})
        if int8.get("agreement_with_fp32"):
            a = int8["agreement_with_fp32"]
            out.say(f"  int8 ({int8['quantization']}) vs fp32 on the export's probe prompts: next-token agreement "
                    f"{a['next_token_agreement']:.1%} over {a['positions']} tokens, "
                    f"{a['identical_greedy_rows']}/{a['rows']} identical completions")
        data["models"][model] = {"exports": {k: {"path": v["path"]} for k, v in paths.items()},
                                 "onnx_manifest": paths["onnx"]["manifest"], "runs": runs}
    out.say(f"\nload average after: {os.getloadavg()[0]:.1f}")
    if args.write:
        out.save(RESULTS, data)
        print(f"wrote {RESULTS.relative_to(REPO)}.txt and .json")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
