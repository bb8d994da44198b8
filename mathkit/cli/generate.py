"""``python -m mathkit generate``: a step-by-step solution from any saved model of this repository.

``generate --checkpoint DIR --problem TEXT`` prints the model's solution and the final answer the
project's extraction reads from it; ``--random`` takes a held-out problem instead (``--seed``
picks it) and, since its answer is known, prints the reference and whether the model got it.

What ``--checkpoint`` may name, and how it is asked:

* an arithmetic decoder of notebook 01 (a ``mathkit_decoder`` folder): the prompt is the
  expression, validated as ``solve`` validates it (:class:`mathkit.cli.solve.Solver`); the chain of
  thought is printed one step a line. ``--random`` draws from the arithmetic test bucket within
  the digits and operators the model was trained on (its ``arithmetic_format.json``).
* a language model: a saved folder, an adapter folder (its base comes from the adapter's config,
  possibly an offline alias), an offline alias such as ``smollm2-135m-instruct``, or a base with
  ``--adapter``, loaded by :func:`mathkit.models.load` as ``evaluate`` loads it. The prompt is the
  evaluator's (:func:`mathkit.data.formatting.build_prompt`) with the tokenizer saved next to the
  model, so the turn format it was trained with: its chat template (notebook 03 gives a Gemma-3
  GGUF tokenizer Gemma's turns from :mod:`mathkit.models.chat_templates` and saves it with the
  adapter), or the plain ``Problem:``/``Solution:`` prompt a template-less tokenizer trains on. The
  answer style is the one the model was trained in: ``prompt_style`` (and ``system_prompt``) in the
  ``results.json`` of the report the folder sits in (notebooks 02 and 03 save ``adapter/`` and
  ``merged/`` next to it); ``--style`` overrides it; with neither, gsm8k. ``--random`` draws a
  problem of a held-out split (``gsm_symbolic`` test: the 20 templates no training set uses, with
  their GSM8K originals).

Every mistake in the input is a :class:`~mathkit.errors.MathkitError`: one line on stderr, exit 2.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mathkit.data.formatting import ALL_STYLES
from mathkit.errors import DataError, ParamsError

DEFAULT_STYLE = "gsm8k"            # evaluate's default, for models with no recorded style
DEFAULT_DATASET = "gsm_symbolic"   # --random for language models: held-out templates (+ originals)
HELD_OUT_SPLIT = "test"
ARITHMETIC_MAX_NEW_TOKENS = 128    # solve's default; a 3-digit trace is ~40 tokens and ends at <end>
RESULTS_FILE = "results.json"      # a notebook report's numbers and the parameters that made them


@dataclass
class Solution:
    """One problem, the model's solution and, when known, the reference answer."""

    model: str
    kind: str                      # "arithmetic" or "language_model"
    problem: str
    prompt: str
    completion: str
    steps: list[str]               # chain-of-thought steps (arithmetic) or solution lines
    answer: str | None             # the final answer the project's extraction reads
    finished: bool                 # the model ended its reply (not cut off at --max-new-tokens)
    reference: str | None = None   # known for --random and for arithmetic
    correct: bool | None = None    # None: no reference, or one that cannot be checked
    source: dict | None = None     # where a --random problem came from
    note: str | None = None
    settings: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)


# ---- checking the arguments before anything is loaded ---------------------------------------

def check_request(*, problem: str | None, random: bool, max_new_tokens: int | None,
                  temperature: float, dataset: str | None) -> None:
    """Raise :class:`ParamsError` / :class:`DataError` for a request that cannot be answered."""
    if (problem is None) == (not random):
        raise ParamsError("give either --problem TEXT or --random (a held-out problem), "
                          + ("not both" if random else "one of them"))
    if problem is not None and not problem.strip():
        raise DataError("the problem is empty: pass its text, e.g. --problem \"What is 12+30?\" "
                        "(or an expression such as 658+189 for an arithmetic model)")
    if max_new_tokens is not None and max_new_tokens < 1:
        raise ParamsError(f"--max-new-tokens must be >= 1, got {max_new_tokens}")
    if temperature < 0:
        raise ParamsError(f"--temperature must be >= 0 (0 = greedy), got {temperature}")
    if dataset is not None and not random:
        raise ParamsError("--dataset names where --random draws from; drop it with --problem")


def recorded_prompt(folder: str | Path | None) -> dict:
    """``{"prompt_style", "system_prompt"}`` of the notebook run that saved ``folder``: the
    parameters in the ``results.json`` of the report it sits in ({} when there is none)."""
    if folder is None or not Path(folder).is_dir():
        return {}
    results = Path(folder).resolve().parent / RESULTS_FILE
    if not results.is_file():
        return {}
    params = json.loads(results.read_text()).get("params") or {}
    return {k: params[k] for k in ("prompt_style", "system_prompt") if k in params}


# ---- arithmetic models (notebook 01) --------------------------------------------------------

def _arithmetic_record(solver, trained: dict, problem: str | None, seed: int) -> dict:
    """The record of the expression asked for, or of one drawn from the test bucket."""
    from mathkit.data.arithmetic import generate_examples, make_example, parse_expression

    cot = bool(trained.get("cot", True))
    if problem is None:
        return generate_examples(1, min_digits=int(trained.get("min_digits", 1)),
                                 max_digits=int(trained.get("max_digits", 3)), ops=solver.ops,
                                 cot=cot, seed=seed, split=HELD_OUT_SPLIT)[0]
    a, b, op = parse_expression(solver.prompt_for(problem))  # solve's validation, model context included
    return make_example(a, b, op, cot=cot)


def _digits_note(record: dict, trained: dict) -> str | None:
    lo, hi = trained.get("min_digits"), trained.get("max_digits")
    if lo is None or hi is None or lo <= record["n_digits"] <= hi:
        return None
    return f"{record['n_digits']}-digit operands; the model was trained on {lo} to {hi} digits"


def solve_arithmetic(checkpoint: str, *, problem: str | None, seed: int, max_new_tokens: int | None,
                     temperature: float, device: str) -> Solution:
    """Ask a ``mathkit_decoder`` model (the expression is validated before generating)."""
    from mathkit.cli.solve import FORMAT_CONFIG, Solver
    from mathkit.data.arithmetic import parse_completion
    from mathkit.data.markers import END
    from mathkit.evaluation.arithmetic_scoring import score_arithmetic
    from mathkit.models.io import read_side_config

    solver = Solver.from_checkpoint(checkpoint, device=device, temperature=temperature, seed=seed,
                                    max_new_tokens=max_new_tokens or ARITHMETIC_MAX_NEW_TOKENS)
    trained = read_side_config(checkpoint, FORMAT_CONFIG) or {}
    record = _arithmetic_record(solver, trained, problem, seed)
    completion = solver.complete([record["prompt"]])[0]
    scored = score_arithmetic(record, completion)
    thought, _ = parse_completion(completion)
    return Solution(
        model=str(checkpoint), kind="arithmetic", problem=record["expression"], prompt=record["prompt"],
        completion=completion, steps=thought.split(), answer=scored["got"] or None,
        finished=END in completion, reference=scored["expected"], correct=scored["correct"],
        source={"dataset": "arithmetic", "split": HELD_OUT_SPLIT} if problem is None else None,
        note=_digits_note(record, trained),
        settings={"max_new_tokens": solver.max_new_tokens, "temperature": temperature, "seed": seed,
                  "ops": list(solver.ops)})


# ---- language models --------------------------------------------------------------------------

def draw_problem(dataset: str, seed: int) -> dict:
    """One row (``problem``, ``answer``, ``id``) of ``dataset``'s held-out split, chosen by ``seed``."""
    from mathkit.data import load_math_dataset

    rows = load_math_dataset(dataset, split=HELD_OUT_SPLIT, n=1, seed=seed)
    if len(rows) == 0:
        raise DataError(f"{dataset} has no {HELD_OUT_SPLIT} problems to draw from; choose another --dataset")
    return rows[0]


def _check_fits(model, tokenizer, prompt: str, add_special_tokens: bool, max_new_tokens: int) -> None:
    """An over-long problem is refused before generating: prompt + budget must fit the context."""
    from mathkit.models.io import unwrap

    context = getattr(unwrap(model).config, "max_position_embeddings", None)
    n_prompt = len(tokenizer(prompt, add_special_tokens=add_special_tokens)["input_ids"])
    if context is not None and n_prompt + max_new_tokens > context:
        raise DataError(f"the problem is too long: its prompt takes {n_prompt} tokens and "
                        f"--max-new-tokens {max_new_tokens} more, but the model reads at most {context}; "
                        "shorten the problem or lower --max-new-tokens")


def sample_completion(model, tokenizer, prompt: str, *, max_new_tokens: int, temperature: float,
                      seed: int, add_special_tokens: bool, stop) -> tuple[str, bool]:
    """(completion, finished) of one prompt sampled at ``temperature`` with ``seed``.

    Written here because :func:`mathkit.evaluation.generation.generate_batched` is greedy only; it
    ends and decodes a reply as that function does (the model's stop tokens, the stop rule)."""
    import torch
    from transformers import StoppingCriteriaList

    from mathkit.evaluation.generation import stop_token_ids
    from mathkit.evaluation.stopping import StopRuleCriteria

    device = next(model.parameters()).device
    enc = tokenizer(prompt, return_tensors="pt", add_special_tokens=add_special_tokens).to(device)
    width = enc["input_ids"].shape[1]
    stops = stop_token_ids(model, tokenizer)
    criteria = StoppingCriteriaList([StopRuleCriteria(stop, tokenizer, width)]) if stop.active else None
    torch.manual_seed(seed)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=True, temperature=temperature,
                             top_k=0, top_p=1.0, pad_token_id=tokenizer.pad_token_id,
                             eos_token_id=stops or None, stopping_criteria=criteria)
    new = out[0, width:].tolist()
    n = next((i + 1 for i, t in enumerate(new) if t in stops), len(new))
    text, by_rule = stop.apply(tokenizer.decode(new[:n], skip_special_tokens=True))
    return text, (n > 0 and new[n - 1] in stops) or by_rule


def solve_language(checkpoint: str, *, adapter: str | None, problem: str | None, dataset: str | None,
                   style: str | None, seed: int, max_new_tokens: int | None, temperature: float,
                   device: str) -> Solution:
    """Ask a language model (folder, adapter folder, alias, or base + ``adapter``)."""
    from mathkit import models
    from mathkit.evaluation.answer_scoring import MathAnswerScorer, score_completion
    from mathkit.evaluation.evaluator import prompt_has_bos, stop_rule
    from mathkit.evaluation.generation import generate_batched

    recorded = recorded_prompt(adapter or checkpoint)
    style = style or recorded.get("prompt_style") or DEFAULT_STYLE
    if problem is None:
        dataset = dataset or DEFAULT_DATASET
        row = draw_problem(dataset, seed)
    else:
        row = {"problem": problem.strip(), "answer": ""}  # no reference: the answer is not graded
    model, tokenizer = models.load(checkpoint, adapter=adapter, device=device)
    scorer = MathAnswerScorer()
    prompt = scorer.prompt_fn(tokenizer, style=style, system_prompt=recorded.get("system_prompt"))(row)
    add_special = not prompt_has_bos(tokenizer, [prompt])
    max_new_tokens = max_new_tokens or scorer.default_max_new_tokens(tokenizer, [row])
    _check_fits(model, tokenizer, prompt, add_special, max_new_tokens)
    rule = stop_rule(scorer, style, None, None)
    if temperature == 0:
        gen = generate_batched(model, tokenizer, [prompt], max_new_tokens=max_new_tokens, batch_size=1,
                               add_special_tokens=add_special, skip_special_tokens=scorer.skip_special_tokens,
                               progress=False, stop=rule)
        completion, finished = gen.completions[0], gen.finished[0]
    else:
        completion, finished = sample_completion(model, tokenizer, prompt, max_new_tokens=max_new_tokens,
                                                 temperature=temperature, seed=seed,
                                                 add_special_tokens=add_special, stop=rule)
    reference = str(row["answer"]) if problem is None else None
    scored = score_completion(completion, reference or "", finished=finished)
    return Solution(
        model=str(checkpoint) + (f" + {adapter}" if adapter else ""), kind="language_model",
        problem=row["problem"], prompt=prompt, completion=completion,
        steps=[line.strip() for line in completion.splitlines() if line.strip()],
        answer=scored["extracted"], finished=finished, reference=reference, correct=scored["correct"],
        source={"dataset": dataset, "split": HELD_OUT_SPLIT, "id": row.get("id")} if problem is None else None,
        note=None if reference is None or scored["gradable"] else "the reference cannot be checked automatically",
        settings={"style": style, "max_new_tokens": max_new_tokens, "temperature": temperature, "seed": seed})


# ---- one entry point --------------------------------------------------------------------------

def generate_solution(checkpoint: str, *, problem: str | None = None, random: bool = False,
                      adapter: str | None = None, dataset: str | None = None, style: str | None = None,
                      seed: int = 0, max_new_tokens: int | None = None, temperature: float = 0.0,
                      device: str = "auto") -> Solution:
    """The solution of ``problem`` (or of a held-out problem drawn with ``seed`` when ``random``)
    by the model ``checkpoint`` names (module docstring). ``max_new_tokens`` None: 128 for an
    arithmetic model, 256 for a language model; ``temperature`` 0 decodes greedily."""
    from mathkit.cli.evaluate import is_arithmetic_model

    check_request(problem=problem, random=random, max_new_tokens=max_new_tokens,
                  temperature=temperature, dataset=dataset)
    checkpoint = str(checkpoint)
    if is_arithmetic_model(checkpoint):
        for flag, value in (("--adapter", adapter), ("--style", style), ("--dataset", dataset)):
            if value is not None:
                raise ParamsError(f"{flag} applies to language models, not to the arithmetic model "
                                  f"{checkpoint} (it reads expressions such as 658+189)")
        return solve_arithmetic(checkpoint, problem=problem, seed=seed, max_new_tokens=max_new_tokens,
                                temperature=temperature, device=device)
    return solve_language(checkpoint, adapter=adapter, problem=problem, dataset=dataset, style=style,
                          seed=seed, max_new_tokens=max_new_tokens, temperature=temperature, device=device)


def format_solution(s: Solution) -> str:
    """The text ``generate`` prints: problem, solution (one step a line), answer, reference."""
    origin = ""
    if s.source:  # "(gsm_symbolic test, gsm_symbolic/eng/0027/1-0)"
        origin = " (" + ", ".join(filter(None, (f"{s.source['dataset']} {s.source['split']}",
                                                s.source.get("id")))) + ")"
    style = f" (prompt style {s.settings['style']})" if "style" in s.settings else ""
    lines = [f"Model: {s.model}{style}", f"Problem{origin}: {s.problem}"]
    if s.note:
        lines.append(f"Note: {s.note}")
    lines.append("Chain of thought:" if s.kind == "arithmetic" else "Solution:")
    lines += [f"  {step}" for step in s.steps] or ["  (empty)"]
    if not s.finished:
        lines.append(f"  (cut off after {s.settings['max_new_tokens']} new tokens: raise --max-new-tokens)"
                     if s.kind == "language_model" else "  (the model did not finish its answer)")
    lines.append(f"Answer: {s.answer}" if s.answer else "Answer: (none found in the solution)")
    if s.reference is not None:
        verdict = {True: "correct", False: "wrong", None: "not checked"}[s.correct]
        lines.append(f"Reference: {s.reference} ({verdict})")
    return "\n".join(lines)


def cmd_generate(args) -> int:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # no "Loading weights" bar before the solution
    solution = generate_solution(args.checkpoint, problem=args.problem, random=args.random,
                                 adapter=args.adapter, dataset=args.dataset, style=args.style,
                                 seed=args.seed, max_new_tokens=args.max_new_tokens,
                                 temperature=args.temperature, device=args.device)
    print(json.dumps(solution.to_json(), ensure_ascii=False, indent=2) if args.json
          else format_solution(solution))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "generate", help="a step-by-step solution from a saved model",
        description="Print a model's step-by-step solution of --problem (or of a held-out problem, "
                    "--random) and the final answer read from it; for --random also the reference "
                    "answer and whether the model got it.")
    p.add_argument("--checkpoint", required=True, metavar="NAME_OR_DIR",
                   help="a saved model or adapter folder (e.g. reports/01_arithmetic_cot/model, "
                        "reports/02_lora_sft/adapter) or an offline alias (smollm2-135m-instruct)")
    p.add_argument("--problem", metavar="TEXT",
                   help="the problem (an expression such as 658+189 for an arithmetic model)")
    p.add_argument("--random", action="store_true",
                   help="solve a held-out problem drawn with --seed instead (the reference is shown)")
    p.add_argument("--adapter", metavar="DIR", help="LoRA adapter folder applied on --checkpoint")
    p.add_argument("--dataset", metavar="NAME",
                   help=f"where --random draws from for a language model: a mathkit.data source's "
                        f"{HELD_OUT_SPLIT} split (default: {DEFAULT_DATASET}; e.g. gsm8k_originals)")
    p.add_argument("--style", choices=ALL_STYLES,
                   help=f"prompt style (default: the one the model was trained with, from the report "
                        f"next to it, else {DEFAULT_STYLE})")
    p.add_argument("--max-new-tokens", type=int,
                   help=f"generation budget (default: {ARITHMETIC_MAX_NEW_TOKENS} for an arithmetic "
                        f"model, 256 for a language model)")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default), > 0 samples")
    p.add_argument("--seed", type=int, default=0, help="picks the --random problem and seeds sampling")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--json", action="store_true", help="print the solution as one JSON object")
    p.set_defaults(func=cmd_generate)
