"""Prompts and training targets: unified rows → text the model reads and the text it should write.

Three answer styles, the same for training (``format_example``) and evaluation (``build_prompt``):

=======  ======================================================================================
style    completion the model learns
=======  ======================================================================================
think    ``<think>\\n{solution}\\n</think>\\n\\nThe final answer is $\\boxed{answer}$.``
gsm8k    ``{solution}\\n#### {answer}``
plain    ``{solution}\\n\\nThe final answer is $\\boxed{answer}$.``
=======  ======================================================================================

``lm_eval_gsm8k`` reproduces lm-evaluation-harness's zero-shot ``gsm8k`` task exactly, so that both
tools can be run on the same prompts: the user turn is ``Question: {problem}\nAnswer:`` (the
task's ``doc_to_text``; the problem as given, no instruction), with no system prompt unless one
other than the default is passed (the harness's ``--system_instruction``), and its completion
is the gsm8k one. Generation should stop where the harness stops: ``STYLE_STOP_STRINGS``.

The user turn is the problem followed by ``STYLE_INSTRUCTIONS[style]`` (which tells a model that
was never fine-tuned how to mark its answer, for zero-shot evaluation), after a system prompt
(default ``DEFAULT_SYSTEM_PROMPT``; ``system_prompt=None`` means the default, ``""`` none).

**Chat templates.** With a chat template the prompt is
``apply_chat_template([system, user], add_generation_prompt=True)``. Templates that reject the
system role (Gemma 2, Mistral v0.1 raise an error) or drop it silently get it folded into the
first user turn instead. The completion is what the full conversation adds after the prompt,
so it ends with the template's end-of-turn marker (trailing newlines dropped, so TRL does not
append a second EOS after a newline). A BOS the template writes is removed when the tokenizer
adds one itself, so prompt + completion tokenizes with exactly one BOS (in TRL and in
``generate``). **No chat template**: ``Problem: ...`` / ``Solution:`` plain text.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from mathkit.errors import DataError

log = logging.getLogger(__name__)

DEFAULT_SYSTEM_PROMPT = ("You are an expert mathematics tutor. Solve problems step-by-step, "
                         "showing your reasoning clearly.")
STYLES: tuple[str, ...] = ("think", "gsm8k", "plain")   # the styles a model is trained in
LM_EVAL_GSM8K = "lm_eval_gsm8k"
ALL_STYLES: tuple[str, ...] = STYLES + (LM_EVAL_GSM8K,)  # plus the harness's prompt, for evaluation
STYLE_INSTRUCTIONS: dict[str, str] = {
    "think": ("Think step by step inside <think> and </think>. After </think>, give the final answer "
              "as: The final answer is $\\boxed{answer}$."),
    # No worked example ("#### 42") here: SmolLM2-135M copied it as its answer in 20 of 30 problems.
    "gsm8k": ("Solve the problem step by step. Then write the final answer, a number, alone on the "
              "last line after ####."),
    "plain": ("Solve the problem step by step, then finish with: The final answer is $\\boxed{answer}$."),
}
# Where generation stops for each style besides EOS: the gsm8k task's ``until`` of lm-eval 0.4.13.
STYLE_STOP_STRINGS: dict[str, tuple[str, ...]] = {LM_EVAL_GSM8K: ("Question:", "</s>", "<|im_end|>")}
_FOLD_SEPARATOR = "\n\n"


def _check_style(style: str) -> None:
    if style not in ALL_STYLES:
        raise DataError(f"unknown prompt style {style!r}; styles are {list(ALL_STYLES)}")


def _system(system_prompt: str | None, style: str = "gsm8k") -> str:
    if style == LM_EVAL_GSM8K:  # the harness sends no system turn unless asked to
        return "" if system_prompt in (None, DEFAULT_SYSTEM_PROMPT) else system_prompt
    return DEFAULT_SYSTEM_PROMPT if system_prompt is None else system_prompt


def _bare(answer: str) -> str:
    """An answer without its ``$...$`` delimiters, to put inside ``\\boxed{}`` or after ``####``."""
    a = answer.strip()
    return a[1:-1].strip() if len(a) >= 2 and a.startswith("$") and a.endswith("$") else a


def user_message(problem: str, style: str, include_instruction: bool = True) -> str:
    """The user turn: the problem, then the style's instruction."""
    _check_style(style)
    if style == LM_EVAL_GSM8K:
        return f"Question: {problem}\nAnswer:"
    return f"{problem.strip()}\n\n{STYLE_INSTRUCTIONS[style]}" if include_instruction else problem.strip()


def completion_text(row: Mapping[str, Any], style: str) -> str:
    """The assistant's reply for a unified row in ``style`` (see the module table).

    Without an answer the reply is the reasoning alone; without a solution, the final answer alone.
    """
    _check_style(style)
    solution = str(row.get("solution") or "").strip()
    answer = _bare(str(row.get("answer") or ""))
    if style in ("gsm8k", LM_EVAL_GSM8K):
        final = f"#### {answer}" if answer else ""
        return "\n".join(p for p in (solution, final) if p)
    final = f"The final answer is $\\boxed{{{answer}}}$." if answer else ""
    if style == "think":
        return f"<think>\n{solution}\n</think>" + (f"\n\n{final}" if final else "")
    return "\n\n".join(p for p in (solution, final) if p)


# ---- chat-template rendering ---------------------------------------------------------------

def has_chat_template(tokenizer) -> bool:
    """Whether the tokenizer carries a chat template (base models often do not)."""
    return bool(getattr(tokenizer, "chat_template", None))


def _messages(system: str, user: str, fold: bool) -> list[dict[str, str]]:
    if not system:
        return [{"role": "user", "content": user}]
    if fold:
        return [{"role": "user", "content": f"{system}{_FOLD_SEPARATOR}{user}"}]
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def _apply(tokenizer, messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def _needs_fold(tokenizer, system: str, user: str) -> bool:
    """True when the template refuses a system turn or renders it without the system text."""
    if not system:
        return False
    from jinja2.exceptions import TemplateError

    try:
        text = _apply(tokenizer, _messages(system, user, fold=False), add_generation_prompt=True)
    except TemplateError as err:
        log.debug("chat template refuses a system turn (%s): folding it into the user turn", err)
        return True
    return system not in text


def _adds_bos(tokenizer) -> bool:
    bos_id = getattr(tokenizer, "bos_token_id", None)
    if bos_id is None or not getattr(tokenizer, "bos_token", None):
        return False
    return tokenizer("x")["input_ids"][:1] == [bos_id]


def _drop_template_bos(tokenizer, text: str) -> str:
    bos = getattr(tokenizer, "bos_token", None)
    if bos and text.startswith(bos) and _adds_bos(tokenizer):
        return text[len(bos):]
    return text


def _plain_prompt(system: str, problem: str, style: str, include_instruction: bool) -> str:
    head = f"{system}\n\n" if system else ""
    if style == LM_EVAL_GSM8K:
        return f"{head}{user_message(problem, style)}"
    tail = f"\n{STYLE_INSTRUCTIONS[style]}" if include_instruction else ""
    return f"{head}Problem: {problem.strip()}{tail}\n\nSolution:"


# ---- public API ----------------------------------------------------------------------------

def build_prompt(tokenizer, problem: str, *, style: str, system_prompt: str | None = DEFAULT_SYSTEM_PROMPT,
                 include_instruction: bool = True) -> str:
    """The text a model continues to solve ``problem``: it ends with the generation prompt."""
    system, user = _system(system_prompt, style), user_message(problem, style, include_instruction)
    if not has_chat_template(tokenizer):
        return _plain_prompt(system, problem, style, include_instruction)
    fold = _needs_fold(tokenizer, system, user)
    return _drop_template_bos(tokenizer, _apply(tokenizer, _messages(system, user, fold), True))


def format_example(tokenizer, row: Mapping[str, Any], *, style: str,
                   system_prompt: str | None = DEFAULT_SYSTEM_PROMPT,
                   include_instruction: bool = True) -> dict[str, str]:
    """``{"prompt", "completion"}`` for TRL's prompt/completion training (loss on the completion)."""
    system, user = _system(system_prompt, style), user_message(str(row["problem"]), style, include_instruction)
    reply = completion_text(row, style)
    if not has_chat_template(tokenizer):
        eos = getattr(tokenizer, "eos_token", None) or ""
        prompt = _plain_prompt(system, str(row["problem"]), style, include_instruction)
        return {"prompt": prompt, "completion": f" {reply}{eos}"}
    fold = _needs_fold(tokenizer, system, user)
    messages = _messages(system, user, fold)
    prompt = _apply(tokenizer, messages, True)
    full = _apply(tokenizer, messages + [{"role": "assistant", "content": reply}], False)
    if full.startswith(prompt):
        completion = full[len(prompt):].rstrip("\n")
    else:  # templates that render history differently (e.g. strip reasoning): reply + EOS
        log.warning("chat template does not extend the prompt with the reply; using the reply + EOS as completion")
        completion = reply + (getattr(tokenizer, "eos_token", None) or "")
    return {"prompt": _drop_template_bos(tokenizer, prompt), "completion": completion}


def format_dataset(dataset, tokenizer, style: str, *, system_prompt: str | None = DEFAULT_SYSTEM_PROMPT,
                   include_instruction: bool = True, keep_columns: bool = True):
    """``dataset`` with ``prompt`` and ``completion`` columns added (other columns kept by default)."""
    _check_style(style)
    missing = {"problem", "solution", "answer"} - set(dataset.column_names)
    if missing:
        raise DataError(f"format_dataset needs the unified columns problem/solution/answer; missing {sorted(missing)}")
    remove = None if keep_columns else dataset.column_names
    return dataset.map(
        lambda row: format_example(tokenizer, row, style=style, system_prompt=system_prompt,
                                   include_instruction=include_instruction),
        remove_columns=remove, desc=f"formatting ({style})",
    )
