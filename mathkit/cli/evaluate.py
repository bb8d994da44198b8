"""``python -m mathkit evaluate``: accuracy of any model of this repo on a math dataset.

Every model goes through :func:`mathkit.evaluation.evaluator.evaluate_model`: a language model (the
offline ``smollm2-135m-instruct``, a saved folder, a hub id, optionally with a LoRA ``--adapter``)
on a dataset of :mod:`mathkit.data` with the math-answer scorer; an arithmetic model of notebook 01
(a ``mathkit_decoder`` folder) on arithmetic records with the arithmetic scorer. Either way it
prints the accuracy with its 95% interval and tokens/s and writes one JSONL line per example
(plus ``<output>.summary.json``). ``--backend onnx|llama_cpp`` runs an export of
``python -m mathkit export`` (``--model`` is its folder or file) through the same evaluator,
decoded by ONNX Runtime or llama.cpp (:func:`mathkit.inference.load_backend`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from mathkit.data.formatting import ALL_STYLES
from mathkit.errors import ParamsError
from mathkit.evaluation.metrics import format_interval
from mathkit.reporting.paths import slug

log = logging.getLogger(__name__)

# mathkit.evaluation.generation.DECODERS, written out so that --help does not import torch
DECODERS = ("auto", "compact", "generate", "external")
BACKENDS = ("torch", "onnx", "llama_cpp")  # mathkit.inference.BACKENDS
DEFAULT_OUTPUT_DIR = "runs/evaluate"  # scratch output, git-ignored; notebooks write reports/


def is_arithmetic_model(name: str) -> bool:
    """Whether ``name`` (a folder or alias) holds a small arithmetic decoder (notebooks 01, 04, 05)
    rather than a language model: the two take different prompts and scorers."""
    from mathkit.models import describe
    from mathkit.models.config import MathDecoderConfig

    return describe(name).get("kind") == MathDecoderConfig.model_type


def _output_path(args) -> Path:
    if args.output:
        return Path(args.output)
    from mathkit.env import resolve_output_dir

    name = f"{slug(args.model)}{'+' + slug(args.adapter) if args.adapter else ''}__{slug(args.dataset)}"
    return resolve_output_dir(DEFAULT_OUTPUT_DIR) / f"{name}.jsonl"


def _check(args) -> None:
    for flag, value in (("--n", args.n), ("--batch-size", args.batch_size),
                        ("--max-new-tokens", args.max_new_tokens), ("--threads", args.threads or None)):
        if value is not None and value < 1:
            raise ParamsError(f"{flag} must be >= 1, got {value}")
    if args.backend != "torch":
        if args.adapter:
            raise ParamsError(f"--adapter applies to --backend torch; for {args.backend}, export the model with "
                              "its adapter merged (python -m mathkit export --adapter DIR ...)")
        for flag, value in (("--load-in-4bit", args.load_in_4bit), ("--bf16", args.bf16),
                            ("--calculator", args.calculator)):
            if value:
                raise ParamsError(f"{flag} applies to --backend torch, not {args.backend}")
        if args.decoder not in ("auto", "external"):
            raise ParamsError(f"--decoder {args.decoder}: the {args.backend} backend decodes outside torch; "
                              "use --decoder auto or external")
    elif args.decoder == "external":
        raise ParamsError("--decoder external needs --backend onnx or llama_cpp")
    if args.adapter and not (Path(args.adapter) / "adapter_config.json").is_file():
        raise ParamsError(f"--adapter {args.adapter}: no adapter_config.json there; pass the folder "
                          "a LoRA run saved its adapter to")


def _arithmetic_task(args):
    """Records and scorer for a mathkit_decoder model (notebook 01's arithmetic)."""
    from mathkit.data.arithmetic import load_arithmetic_records
    from mathkit.evaluation.arithmetic_scoring import ArithmeticScorer

    if args.adapter:
        raise ParamsError("--adapter applies to language models, not to a mathkit_decoder model")
    if args.calculator:
        raise ParamsError("--calculator applies to language models; an arithmetic model is "
                          "evaluated on its own answers")
    return load_arithmetic_records(args.dataset, args.n, args.seed), ArithmeticScorer(token_accuracy=False)


def _math_task(args):
    """Problems and scorer for a language model on a mathkit.data source."""
    from mathkit.data import load_math_dataset
    from mathkit.evaluation.answer_scoring import MathAnswerScorer

    dataset = load_math_dataset(args.dataset, split=args.split, n=args.n, seed=args.seed)
    return dataset, MathAnswerScorer()


def _check_calculator(args, tokenizer) -> None:
    from mathkit.evaluation.calculator import calculator_supported

    if args.calculator and not calculator_supported(tokenizer):
        raise ParamsError(f"--calculator: {args.model}'s tokenizer does not write digits, '.' and '-' "
                          "one token each, so results cannot be written; drop --calculator")


def _print_summary(s: dict, calculator: bool) -> None:
    line = f"accuracy: {format_interval(s)}"
    if "strict" in s:
        line += (f" (strict {format_interval(s['strict'])}; unparsable {s['unparsable']}, "
                 f"ungradable {s['ungradable']}, truncated {s['truncated']})")
    print(line)
    if s.get("thought_match"):
        print(f"thought match: {format_interval(s['thought_match'])}")
    print(f"tokens/s: {s['tokens_per_second']:.1f} ({s['new_tokens']} new tokens in "
          f"{s['generation_seconds']:.1f} s; decoder {s['decoder']}, {s['stopped_early']} stopped "
          f"after their answer or at a stop string)")
    if calculator:
        print(f"calculator: {s['calculator_uses']} results written")


def _load_with_task(args):
    """``(model, tokenizer, rows, scorer)``: an arithmetic model gets arithmetic records, a
    language model the math task. An export says what it holds in its config once loaded."""
    from mathkit.inference import load_backend

    if args.backend == "torch":
        if is_arithmetic_model(args.model):
            rows, scorer = _arithmetic_task(args)
            return (*load_backend(args.model, "torch"), rows, scorer)
        rows, scorer = _math_task(args)
        model, tokenizer = load_backend(args.model, "torch", adapter=args.adapter, load_in_4bit=args.load_in_4bit)
        _check_calculator(args, tokenizer)
        return model, tokenizer, rows, scorer
    model, tokenizer = load_backend(args.model, args.backend, threads=args.threads or None)
    from mathkit.models.config import MathDecoderConfig

    arithmetic = getattr(getattr(model, "config", None), "model_type", None) == MathDecoderConfig.model_type
    return (model, tokenizer, *(_arithmetic_task(args) if arithmetic else _math_task(args)))


def _evaluate(args, out: Path) -> dict:
    from mathkit.evaluation.evaluator import evaluate_model

    model, tokenizer, rows, scorer = _load_with_task(args)
    result = evaluate_model(model, tokenizer, rows, scorer=scorer, style=args.style,
                            system_prompt=args.system_prompt, batch_size=args.batch_size,
                            max_new_tokens=args.max_new_tokens, bf16=args.bf16,
                            records_path=out, progress=not args.no_progress,
                            calculator=args.calculator, stop_strings=args.stop_string,
                            stop_at_answer=False if args.no_stop_at_answer else None,
                            decoder=args.decoder)
    _print_summary(result.summary, args.calculator)
    return result.summary


def cmd_evaluate(args) -> int:
    _check(args)
    if args.threads:
        from mathkit.env import set_threads

        set_threads(args.threads)
    out = _output_path(args)
    summary = _evaluate(args, out)
    summary = {"model": args.model, "adapter": args.adapter, "backend": args.backend, "dataset": args.dataset,
               "split": args.split, "seed": args.seed, **summary}
    summary_path = out.with_name(out.name.removesuffix(".jsonl") + ".summary.json")
    summary_path.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print(f"records: {out}\nsummary: {summary_path}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate", help="accuracy of a model on a math dataset (with 95%% interval)",
        description="Greedy-decode every problem, check the answers (lenient and strict), print "
                    "accuracy with its 95% Wilson interval and tokens/s, and write per-example "
                    "JSONL records.")
    p.add_argument("--model", required=True, metavar="NAME_OR_DIR",
                   help="smollm2-135m-instruct (offline), a saved model or adapter folder, a "
                        "mathkit_decoder folder (notebook 01), or a hub id")
    p.add_argument("--adapter", metavar="DIR", help="LoRA adapter folder applied on --model")
    p.add_argument("--backend", default="torch", choices=BACKENDS,
                   help="torch (default); onnx: --model is an ONNX export folder (python -m mathkit export); "
                        "llama_cpp: a GGUF file or export folder (needs pip install mathkit[edge])")
    p.add_argument("--dataset", required=True, metavar="NAME_OR_FILE",
                   help="a mathkit.data source (gsm8k_originals, gsm_symbolic, champ, ...) or a "
                        "local file; for a mathkit_decoder: arithmetic records (.jsonl) or "
                        "arithmetic[:MIN-MAX[:OPS]]")
    p.add_argument("--split", help="split of the source (e.g. test: held-out templates)")
    p.add_argument("--n", type=int, help="evaluate on n examples (seeded sample)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample (default: 0)")
    p.add_argument("--batch-size", type=int, default=100,
                   help="prompts per batch (default: 100; on a 2-core CPU batch 100 decoded SmolLM2 ~1.7x faster "
                        "than batch 32, benchmarks/results/vs_lm_eval_cpu.txt)")
    p.add_argument("--max-new-tokens", type=int,
                   help="generation budget (default: 256; arithmetic: longest reference + 8)")
    p.add_argument("--style", default="gsm8k", choices=ALL_STYLES,
                   help="prompt style of mathkit.data.formatting (default: gsm8k; lm_eval_gsm8k: "
                        "lm-evaluation-harness's gsm8k prompt and stop strings)")
    p.add_argument("--system-prompt", help="system prompt (default: the formatting module's)")
    p.add_argument("--bf16", action="store_true", help="generate under bf16 autocast")
    p.add_argument("--calculator", action="store_true",
                   help="write the result of every 'expression =' the model generates (mathkit.evaluation.calculator)")
    p.add_argument("--stop-string", action="append", metavar="TEXT",
                   help="end a completion before TEXT (repeatable; default: the style's, e.g. "
                        "'Question:' for lm_eval_gsm8k)")
    p.add_argument("--no-stop-at-answer", action="store_true",
                   help="keep generating after a '#### n' or boxed answer line (default: stop there)")
    p.add_argument("--decoder", default="auto", choices=DECODERS,
                   help="auto (default): finished rows leave the batch where the model allows; "
                        "generate: transformers' generate, every row until the longest ends; "
                        "external: the onnx/llama_cpp backend's own loop (what auto picks there)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads, and ONNX Runtime's / llama.cpp's (default 0: their choice; 1 is "
                        "faster on a busy CPU)")
    p.add_argument("--load-in-4bit", action="store_true", help="NF4 weights via bitsandbytes")
    p.add_argument("--output", metavar="FILE",
                   help=f"records JSONL (default: {DEFAULT_OUTPUT_DIR}/<model>__<dataset>.jsonl)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_evaluate)
