"""``python -m mathkit evaluate``: accuracy of any model of this repo on a math dataset.

Language models (the offline ``smollm2-135m-instruct``, a saved folder, a hub id, optionally with
a LoRA ``--adapter``) go through :func:`mathkit.evaluation.evaluator.evaluate_model` on a dataset of
:mod:`mathkit.data`; an arithmetic model of notebook 01 (a ``mathkit_decoder`` folder) goes
through :func:`mathkit.evaluation.arithmetic_scoring.evaluate_arithmetic` on arithmetic records. Either way it
prints the accuracy with its 95% interval and tokens/s and writes one JSONL line per example
(plus ``<output>.summary.json``).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from mathkit.errors import DataError, ParamsError

log = logging.getLogger(__name__)

DEFAULT_OUTPUT_DIR = "runs/evaluate"  # scratch output, git-ignored; notebooks write reports/
ARITHMETIC_SPEC = re.compile(r"arithmetic(?::(\d+)-(\d+))?(?::([+\-*]+))?")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(str(text).rstrip("/")).name or str(text)).strip("_")


def _model_type(path: Path) -> str | None:
    config = path / "config.json"
    if path.is_dir() and config.is_file():
        return json.loads(config.read_text()).get("model_type")
    return None


def _is_arithmetic_model(name: str) -> bool:
    from mathkit.models.config import MathDecoderConfig

    return _model_type(Path(name).expanduser()) == MathDecoderConfig.model_type


def _output_path(args) -> Path:
    if args.output:
        return Path(args.output)
    from mathkit.env import resolve_output_dir

    name = f"{_slug(args.model)}{'+' + _slug(args.adapter) if args.adapter else ''}__{_slug(args.dataset)}"
    return resolve_output_dir(DEFAULT_OUTPUT_DIR) / f"{name}.jsonl"


def _check(args) -> None:
    for flag, value in (("--n", args.n), ("--batch-size", args.batch_size),
                        ("--max-new-tokens", args.max_new_tokens)):
        if value is not None and value < 1:
            raise ParamsError(f"{flag} must be >= 1, got {value}")
    if args.adapter and not (Path(args.adapter) / "adapter_config.json").is_file():
        raise ParamsError(f"--adapter {args.adapter}: no adapter_config.json there; pass the folder "
                          "a LoRA run saved its adapter to")


def load_language_model(name: str, *, adapter: str | None = None, load_in_4bit: bool = False):
    """``(model, tokenizer)`` for the CLI: alias, folder (adapter folders included) or hub id,
    then ``adapter`` on top; on the GPU when there is one."""
    import torch

    from mathkit.models.base import load_base_model

    cuda = torch.cuda.is_available()
    path = Path(name).expanduser()
    if (path / "adapter_config.json").is_file():
        from mathkit.models.io import load_model  # reads the adapter's base model itself

        model, tokenizer = load_model(path, device="cuda" if cuda else "cpu")
    else:
        model, tokenizer = load_base_model(name, load_in_4bit=load_in_4bit,
                                           device_map={"": 0} if cuda and load_in_4bit else None)
        if cuda and not load_in_4bit:
            model.to("cuda")
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter)
        model.eval()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def _arithmetic_records(dataset: str, n: int | None, seed: int) -> list[dict]:
    from mathkit.data.arithmetic import generate_examples, load_jsonl

    m = ARITHMETIC_SPEC.fullmatch(dataset)
    if m:
        lo, hi, ops = m.group(1), m.group(2), m.group(3)
        return generate_examples(n or 500, min_digits=int(lo or 1), max_digits=int(hi or 3),
                                 ops=tuple(ops or "+"), seed=seed)
    path = Path(dataset)
    if path.suffix != ".jsonl" or not path.is_file():
        raise DataError(f"an arithmetic (mathkit_decoder) model is evaluated on arithmetic records: "
                        f"pass --dataset FILE.jsonl (written by mathkit.data.arithmetic.save_jsonl) or "
                        f"'arithmetic[:MIN-MAX[:OPS]]', e.g. arithmetic:1-3:+ ; got {dataset!r}")
    records = load_jsonl(path)
    missing = {"prompt", "completion", "result"} - set(records[0] if records else {})
    if not records or missing:
        raise DataError(f"{path} holds no arithmetic records (missing {sorted(missing)})")
    if n is not None and n < len(records):
        import random

        records = random.Random(seed).sample(records, n)
    return records


def _evaluate_arithmetic(args, out: Path) -> dict:
    from mathkit.evaluation.arithmetic_scoring import evaluate_arithmetic
    from mathkit.evaluation.evaluator import write_records
    from mathkit.models.io import load_model

    from mathkit.env import best_device

    records = _arithmetic_records(args.dataset, args.n, args.seed)
    model, tokenizer = load_model(args.model, device=best_device())
    result = evaluate_arithmetic(model, tokenizer, records, batch_size=args.batch_size,
                                 max_new_tokens=args.max_new_tokens, bf16=args.bf16,
                                 token_accuracy=False)
    write_records(result.rows, out)
    summary = result.to_metrics()
    em = summary["exact_match"]
    print(f"exact match: {em['accuracy']:.3f} [{em['ci95'][0]:.3f}, {em['ci95'][1]:.3f}] "
          f"n={em['n']}")
    if summary["thought_match"]:
        print(f"thought match: {summary['thought_match']['accuracy']:.3f}")
    print(f"tokens/s: {summary['generation_tokens_per_second']:.1f} "
          f"({summary['generation_seconds']:.1f} s of generation)")
    return summary


def _evaluate_language_model(args, out: Path) -> dict:
    from mathkit.evaluation.calculator import calculator_supported
    from mathkit.data import load_math_dataset
    from mathkit.evaluation.evaluator import evaluate_model

    dataset = load_math_dataset(args.dataset, split=args.split, n=args.n, seed=args.seed)
    model, tokenizer = load_language_model(args.model, adapter=args.adapter,
                                           load_in_4bit=args.load_in_4bit)
    if args.calculator and not calculator_supported(tokenizer):
        raise ParamsError(f"--calculator: {args.model}'s tokenizer does not write digits, '.' and '-' "
                          "one token each, so results cannot be written; drop --calculator")
    result = evaluate_model(model, tokenizer, dataset, style=args.style,
                            system_prompt=args.system_prompt, batch_size=args.batch_size,
                            max_new_tokens=args.max_new_tokens or 256, bf16=args.bf16,
                            records_path=out, progress=not args.no_progress,
                            calculator=args.calculator)
    s = result.summary
    st = s["strict"]
    print(f"accuracy: {s['accuracy']:.3f} [{s['ci95'][0]:.3f}, {s['ci95'][1]:.3f}] n={s['n']} "
          f"(strict {st['accuracy']:.3f} [{st['ci95'][0]:.3f}, {st['ci95'][1]:.3f}]; "
          f"unparsable {s['unparsable']}, truncated {s['truncated']})")
    print(f"tokens/s: {s['tokens_per_second']:.1f} ({s['new_tokens']} new tokens in "
          f"{s['generation_seconds']:.1f} s)")
    if args.calculator:
        print(f"calculator: {s['calculator_uses']} results written")
    return s


def cmd_evaluate(args) -> int:
    _check(args)
    out = _output_path(args)
    if _is_arithmetic_model(args.model):
        if args.adapter:
            raise ParamsError("--adapter applies to language models, not to a mathkit_decoder model")
        summary = _evaluate_arithmetic(args, out)
    else:
        summary = _evaluate_language_model(args, out)
    summary = {"model": args.model, "adapter": args.adapter, "dataset": args.dataset,
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
    p.add_argument("--dataset", required=True, metavar="NAME_OR_FILE",
                   help="a mathkit.data source (gsm8k_originals, gsm_symbolic, champ, ...) or a "
                        "local file; for a mathkit_decoder: arithmetic records (.jsonl) or "
                        "arithmetic[:MIN-MAX[:OPS]]")
    p.add_argument("--split", help="split of the source (e.g. test: held-out templates)")
    p.add_argument("--n", type=int, help="evaluate on n examples (seeded sample)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample (default: 0)")
    p.add_argument("--batch-size", type=int, default=32, help="prompts per generate call (default: 32)")
    p.add_argument("--max-new-tokens", type=int,
                   help="generation budget (default: 256; arithmetic: longest reference + 8)")
    p.add_argument("--style", default="gsm8k", choices=("gsm8k", "think", "plain"),
                   help="prompt style of mathkit.data.formatting (default: gsm8k)")
    p.add_argument("--system-prompt", help="system prompt (default: the formatting module's)")
    p.add_argument("--bf16", action="store_true", help="generate under bf16 autocast")
    p.add_argument("--calculator", action="store_true",
                   help="write the result of every 'expression =' the model generates (mathkit.evaluation.calculator)")
    p.add_argument("--load-in-4bit", action="store_true", help="NF4 weights via bitsandbytes")
    p.add_argument("--output", metavar="FILE",
                   help=f"records JSONL (default: {DEFAULT_OUTPUT_DIR}/<model>__<dataset>.jsonl)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_evaluate)
