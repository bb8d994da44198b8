"""Gemma-3-270m through GGUF and llama.cpp: does the exported file answer as torch does?

Why: the edge benchmark runs SmolLM2 (Llama) through llama.cpp; Gemma-3 is another architecture for
llama.cpp's converter (norm weights stored as 1 + w, embeddings scaled by sqrt(hidden), sliding-window
layers), so a silent mismatch there would only show in the answers. The real gemma-3-270m base model
(offline alias ``gemma-3-270m``) is exported with :func:`mathkit.export.gguf_export.export_gguf`
(F32, then Q8_0), and torch fp32 and each GGUF answer the same GSM8K originals through the one
evaluator (greedy, the ``think`` prompt with Gemma's chat template, one prompt at a time): how many
completions are identical to torch's, accuracy, tokens/s, file size.

    python benchmarks/gguf_gemma3.py --n 8 --max-new-tokens 64 --save benchmarks/results/gguf_gemma3_cpu

Needs llama-cpp-python (``make edge``).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from transcript import Transcript  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

MiB = 2**20


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=8, help="GSM8K originals")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quantizations", default="F32,Q8_0")
    ap.add_argument("--export-dir", default=None, help="where the GGUF files go (default: a temporary folder)")
    ap.add_argument("--save", metavar="PREFIX")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from mathkit.data import load_math_dataset
    from mathkit.env import cpu_model, set_threads
    from mathkit.evaluation.evaluator import evaluate_model
    from mathkit.export.gguf_export import export_gguf
    from mathkit.inference import load_backend
    from mathkit.models.memory_estimate import parameter_bytes

    set_threads(args.threads)
    out = Transcript()
    out.say(f"# python benchmarks/gguf_gemma3.py --n {args.n} --max-new-tokens {args.max_new_tokens} "
            f"--threads {args.threads} --quantizations {args.quantizations}")
    out.say(f"{cpu_model()}; torch {torch.__version__}; load average {os.getloadavg()[0]:.1f}")
    rows = load_math_dataset("gsm8k_originals", n=args.n).to_list()
    common = dict(style="think", batch_size=1, max_new_tokens=args.max_new_tokens, progress=False)
    model, tokenizer = load_backend("gemma-3-270m", "torch", dtype=torch.float32, device="cpu")
    reference = evaluate_model(model, tokenizer, rows, **common)
    torch_mb = parameter_bytes(model) / MiB
    del model
    runs = [{"name": "torch fp32", "mb": torch_mb, "summary": reference.summary, "same": args.n, "export_s": None}]
    root = Path(args.export_dir or tempfile.mkdtemp(prefix="mathkit-gemma3-gguf-"))
    for quantization in [q.strip() for q in args.quantizations.split(",") if q.strip()]:
        t0 = time.perf_counter()
        path = export_gguf("gemma-3-270m", root / quantization, quantization=quantization)
        export_s = time.perf_counter() - t0
        model, tok = load_backend(path, "llama_cpp", threads=args.threads)
        try:
            ev = evaluate_model(model, tok, rows, **common)
        finally:
            model.close()
        same = sum(a["completion"] == b["completion"] for a, b in zip(reference.records, ev.records))
        runs.append({"name": f"llama.cpp {quantization}", "mb": path.stat().st_size / MiB, "summary": ev.summary,
                     "same": same, "export_s": export_s})
    out.say(f"\ngemma-3-270m on {args.n} GSM8K originals, think prompt, greedy, {args.max_new_tokens} new tokens "
            "at most, one prompt at a time:")
    out.say(f"  {'backend':18} {'MiB':>8} {'correct':>8} {'same text as torch':>19} {'tok/s':>7} {'export s':>9}")
    for r in runs:
        s = r["summary"]
        export_s = "-" if r["export_s"] is None else f"{r['export_s']:.0f}"
        out.say(f"  {r['name']:18} {r['mb']:8.1f} {s['correct']:>4}/{s['n']:<3} {r['same']:>12}/{args.n:<6} "
                f"{s['tokens_per_second']:7.1f} {export_s:>9}")
    out.say(f"load average after: {os.getloadavg()[0]:.1f}")
    if args.save:
        out.save(args.save, {"args": vars(args), "runs": [{**r, "summary": {k: v for k, v in r["summary"].items()
                                                                            if k != "settings"}} for r in runs],
                             "completions": {"torch": [x["completion"] for x in reference.records]}})
    return 0


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    raise SystemExit(main())
