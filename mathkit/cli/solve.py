"""``python -m mathkit solve`` and ``python -m mathkit chat``: ask a trained arithmetic model.

``solve EXPR...`` prints ``EXPR ANSWER`` per line (``--json``: a list of
``{"expression", "answer", "completion"}``); ``chat`` is the seed's interactive loop: it
validates each line, shows the chain of thought and the answer, and ends on quit/exit/Ctrl-D.
Both read the model that notebook 01 saves (``reports/01_arithmetic_cot/model`` by default);
``--backend onnx`` reads its ONNX export instead (``python -m mathkit export``), decoded greedily by
ONNX Runtime (sampling, ``--temperature > 0``, stays with torch).
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable
from pathlib import Path

from mathkit.data.arithmetic import OPS, parse_completion, validate_expression
from mathkit.data.markers import END, THINK_END, THINK_START
from mathkit.env import resolve_output_dir
from mathkit.errors import DataError, ParamsError

log = logging.getLogger(__name__)

DEFAULT_CHECKPOINT = "reports/01_arithmetic_cot/model"
FORMAT_CONFIG = "arithmetic_format"  # side file notebook 01 saves with the model: ops, digits, cot
PROMPT = "➤ Enter expression: "
QUIT_WORDS = ("quit", "exit")


class Solver:
    """A loaded model with its tokenizer that completes validated arithmetic prompts."""

    def __init__(self, model, tokenizer, *, max_new_tokens: int = 128, temperature: float = 0.0,
                 seed: int = 0, ops: tuple[str, ...] = OPS):
        if temperature < 0:
            raise DataError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
        self.model, self.tokenizer = model, tokenizer
        self.max_new_tokens, self.temperature, self.seed = max_new_tokens, temperature, seed
        self.ops = tuple(ops)  # operators the model was trained on: others are refused up front
        self.max_length = getattr(getattr(model, "config", None), "max_position_embeddings", None)

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path, device: str = "auto", backend: str = "torch",
                        **kwargs) -> "Solver":
        """Load ``checkpoint`` (a folder written by ``mathkit.models.save``) on ``device``, or an
        export of it on ``backend`` (:func:`mathkit.inference.load_backend`)."""
        path = Path(checkpoint)
        if backend != "torch":
            return cls._from_export(path, backend, **kwargs)
        if not (path / "config.json").is_file():
            raise DataError(f"no model at {path} (config.json missing): train one with "
                            "`python -m mathkit run 01_arithmetic_cot` or pass --checkpoint DIR")
        from mathkit.models import load  # torch and transformers: import only when needed
        from mathkit.models.io import read_side_config

        if device == "cuda":
            import torch

            if not torch.cuda.is_available():
                raise DataError("--device cuda: no CUDA GPU is visible here; use --device cpu or auto")
        model, tokenizer = load(path, device=device)
        trained = read_side_config(path, FORMAT_CONFIG) or {}
        if trained.get("ops"):
            kwargs.setdefault("ops", tuple(trained["ops"]))
        return cls(model, tokenizer, **kwargs)

    @classmethod
    def _from_export(cls, path: Path, backend: str, **kwargs) -> "Solver":
        """An ONNX / llama.cpp export: greedy only (sampling runs in torch)."""
        if kwargs.get("temperature", 0.0) > 0:
            raise ParamsError(f"--temperature > 0 samples with torch; the {backend} backend decodes greedily: "
                              "use --temperature 0 or --backend torch with the original checkpoint")
        from mathkit.inference import load_backend
        from mathkit.models.io import read_side_config

        model, tokenizer = load_backend(path, backend)
        trained = (read_side_config(path, FORMAT_CONFIG) if path.is_dir() else None) or {}
        if trained.get("ops"):
            kwargs.setdefault("ops", tuple(trained["ops"]))
        return cls(model, tokenizer, **kwargs)

    def prompt_for(self, expression: str) -> str:
        """Validated prompt (``"12+3="``) for the model's context length; raises DataError."""
        return validate_expression(expression, max_length=self.max_length, ops=self.ops)

    def complete(self, prompts: list[str]) -> list[str]:
        """Completions (``<think>...</think>ANSWER<end>``) for validated prompts."""
        if not prompts:
            return []
        if self.temperature == 0:
            from mathkit.evaluation.generation import generate_batched

            return generate_batched(self.model, self.tokenizer, prompts, max_new_tokens=self.max_new_tokens,
                                    batch_size=64, skip_special_tokens=False, add_special_tokens=False,
                                    progress=False).completions
        return [self._sample(p) for p in prompts]

    def _sample(self, prompt: str) -> str:
        """One sampled completion (one prompt at a time: no padding to get wrong)."""
        import torch

        device = next(self.model.parameters()).device
        enc = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(device)
        torch.manual_seed(self.seed)
        with torch.no_grad():
            out = self.model.generate(**enc, max_new_tokens=self.max_new_tokens, do_sample=True,
                                      temperature=self.temperature, top_k=0, top_p=1.0,
                                      pad_token_id=self.tokenizer.pad_token_id,
                                      eos_token_id=self.tokenizer.eos_token_id)
        new = out[0, enc["input_ids"].shape[1]:].tolist()
        eos = self.tokenizer.eos_token_id
        if eos in new:
            new = new[:new.index(eos) + 1]
        return self.tokenizer.decode(new, skip_special_tokens=False)

    def solve(self, expressions: list[str]) -> list[dict]:
        """``[{"expression", "answer", "completion"}]``; all inputs are validated first."""
        prompts = [self.prompt_for(e) for e in expressions]
        completions = self.complete(prompts)
        return [{"expression": p.removesuffix("="), "answer": parse_completion(c)[1], "completion": c}
                for p, c in zip(prompts, completions)]


def format_chat_reply(prompt: str, completion: str) -> str:
    """The seed's display: model output, the chain of thought, then the answer."""
    thought, answer = parse_completion(completion)
    lines = [f"✨ Model output: {prompt}{completion}", "🤔 Chain of thought:", f"  {prompt}"]
    if THINK_START in completion:
        lines += ["  🧮 Think:", f"    {thought}" if thought else "    (empty)"]
        if THINK_END not in completion:
            lines.append("  (the model did not close its chain of thought)")
    lines.append(f"  {answer}{END if END in completion else ''}")
    lines.append(f"✅ Answer: {prompt}{answer}" if answer else "❌ No answer: the model did not finish")
    return "\n".join(lines)


def chat_loop(solver: Solver, input_fn: Callable[[str], str] = input,
              print_fn: Callable[[str], None] = print) -> int:
    """Read expressions until quit/exit/EOF; bad input gets a message and the loop goes on.

    Returns the number of expressions answered.
    """
    print_fn("Type an expression such as 12+34 (quit, exit or Ctrl-D to leave).")
    answered = 0
    while True:
        try:
            line = input_fn(PROMPT)
        except (EOFError, KeyboardInterrupt):
            print_fn("")
            break
        text = line.strip()
        if text.lower() in QUIT_WORDS:
            break
        if not text:
            continue
        try:
            prompt = solver.prompt_for(text)
        except DataError as err:
            print_fn(f"⚠️  {err}")
            continue
        print_fn(f"💭 Generating completion for: {prompt}")
        completion = solver.complete([prompt])[0]
        print_fn(format_chat_reply(prompt, completion))
        answered += 1
    print_fn("Bye.")
    return answered


def _solver_from_args(args) -> Solver:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # no "Loading weights" bar between the prompt and the answer
    # The default is taken from the repository root (like the notebooks' output_dir), so the
    # commands work from any folder of the checkout; a given path is relative to the cwd.
    checkpoint = args.checkpoint or resolve_output_dir(DEFAULT_CHECKPOINT)
    return Solver.from_checkpoint(checkpoint, device=args.device, backend=args.backend,
                                  max_new_tokens=args.max_new_tokens, temperature=args.temperature, seed=args.seed)


def cmd_solve(args) -> int:
    solver = _solver_from_args(args)
    results = solver.solve(args.expressions)
    if args.json:
        print(json.dumps(results, ensure_ascii=False, indent=2))
    else:
        for r in results:
            print(f"{r['expression']} {r['answer'] or '?'}")
    return 0


def cmd_chat(args) -> int:
    chat_loop(_solver_from_args(args))
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", default=None,
                   help=f"model folder saved by notebook 01 (default: {DEFAULT_CHECKPOINT})")
    p.add_argument("--max-new-tokens", type=int, default=128, help="generation budget (default: 128)")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default), > 0 samples")
    p.add_argument("--seed", type=int, default=0, help="sampling seed when --temperature > 0")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--backend", choices=("torch", "onnx", "llama_cpp"), default="torch",
                   help="torch (default); onnx: --checkpoint is an ONNX export folder (python -m mathkit "
                        "export), decoded greedily by ONNX Runtime")


def register(subparsers) -> None:
    p = subparsers.add_parser("solve", help="answer arithmetic expressions with a trained model",
                              description="Print 'EXPR ANSWER' per expression, answered by a notebook-01 model.")
    p.add_argument("expressions", nargs="+", metavar="EXPR", help="e.g. 658+189 (a trailing = is fine)")
    p.add_argument("--json", action="store_true", help="print a JSON list of {expression, answer, completion}")
    _common(p)
    p.set_defaults(func=cmd_solve)

    c = subparsers.add_parser("chat", help="interactive arithmetic with a trained model",
                              description="Type expressions, see the chain of thought and the answer.")
    _common(c)
    c.set_defaults(func=cmd_chat)

