"""A calculator inside greedy decoding: the model writes ``350*3/5=``, the calculator writes ``210``.

Small models set up a step correctly and then get its arithmetic wrong (SmolLM2-135M writes
``3*68=184``), and every later step inherits the error. GSM8K's authors (Cobbe et al. 2021,
"Training Verifiers to Solve Math Word Problems", section 2) ran their models with a calculator
for this reason: when a generated line reaches ``=`` after an arithmetic expression, the result is
computed and written for the model. Here it is a transformers ``LogitsProcessor`` (transformers
has no calculator of its own), so it works inside batched ``generate`` with the KV cache and
applies the same rule to every model it is given:

* the expression is the run of numbers and ``+ - * / x × ÷ ( ) % $ ,`` just before ``=`` on the
  current line of the *generated* text (the prompt is never read), with at least one operator;
* nothing is forced until the model itself starts writing a number after the ``=`` (so its own
  spacing and ``$`` stay its own); then the digits of the result replace the model's, and one
  more digit is not allowed, so ``210`` cannot become ``2105``;
* an expression that does not parse, divides by zero or overflows is left to the model.

It only ever replaces a number the model was about to write; it never adds steps or answers.
"""

from __future__ import annotations

import ast
import operator
import re
from functools import lru_cache

import torch
from transformers import LogitsProcessor

# Characters an arithmetic expression may hold (no newline: an expression never spans lines).
_EXPR_TAIL = re.compile(r"[0-9.,+\-*/x×÷()%$ \t]*$")
# "=" then optional spaces and a currency sign: where the number of the result goes.
_AFTER_EQUALS = re.compile(r"=[ \t]*\$?[ \t]*$")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: operator.truediv}
MAX_MAGNITUDE = 1e12


def _eval_node(node) -> float:
    if isinstance(node, ast.Expression):
        return _eval_node(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) \
            and not isinstance(node.value, bool):
        return float(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        return _BINARY[type(node.op)](_eval_node(node.left), _eval_node(node.right))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _eval_node(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    raise ValueError("not plain arithmetic")


def evaluate_expression(text: str) -> float | None:
    """The value of a written arithmetic expression (``"$68 * 3 "``, ``"1000*25%"``,
    ``"7 x 9"``), or None when ``text`` is not one: no operator, does not parse, divides by zero,
    or exceeds ``MAX_MAGNITUDE``. Only + - * / and parentheses are evaluated (``ast``, no eval)."""
    expr = _THOUSANDS.sub("", text).replace("$", "")
    expr = expr.replace("×", "*").replace("x", "*").replace("÷", "/")
    expr = re.sub(r"(\d+(?:\.\d+)?)\s*%", r"(\1/100)", expr)
    expr = expr.strip()
    expr = re.sub(r"^[^0-9(\-]+", "", expr)       # "x 3*4" -> "3*4": leftovers of words
    if not re.search(r"\d\s*[-+*/]\s*[\d(]|\)\s*[-+*/]|/100\)", expr):
        return None                                # a lone number is not a calculation
    try:
        value = _eval_node(ast.parse(expr, mode="eval"))
    except (SyntaxError, ValueError, ZeroDivisionError, OverflowError, RecursionError):
        return None
    if value != value or abs(value) > MAX_MAGNITUDE:
        return None
    return value


def format_number(value: float) -> str:
    """``210.0`` -> ``"210"``, ``2.5`` -> ``"2.5"``, ``1/3`` -> ``"0.33"`` (two decimals, as in
    GSM8K solutions)."""
    if abs(value - round(value)) < 1e-9:
        return str(int(round(value)))
    return f"{value:.2f}".rstrip("0").rstrip(".")


def pending_result(generated_text: str) -> str | None:
    """The result the calculator would write after ``generated_text``, or None: the text must
    end in ``=`` (plus optional spaces / ``$``) after an arithmetic expression on its last line."""
    line = generated_text.rsplit("\n", 1)[-1]
    after = _AFTER_EQUALS.search(line)
    if after is None:
        return None
    expression = _EXPR_TAIL.search(line[:after.start()]).group(0)
    value = evaluate_expression(expression)
    return None if value is None else format_number(value)


@lru_cache(maxsize=8)
def _vocab_tables(tokenizer) -> tuple[dict[str, int], torch.Tensor]:
    """Token id of each single character ``0-9 . -`` and a mask of tokens that start with a digit."""
    chars = {}
    for ch in "0123456789.-":
        ids = tokenizer.convert_tokens_to_ids([ch])
        if ids and ids[0] is not None and ids[0] != tokenizer.unk_token_id \
                and tokenizer.decode(ids) == ch:
            chars[ch] = ids[0]
    starts_with_digit = torch.zeros(len(tokenizer), dtype=torch.bool)
    for token_id in range(len(tokenizer)):
        piece = tokenizer.decode([token_id])
        if piece[:1].isdigit():
            starts_with_digit[token_id] = True
    return chars, starts_with_digit


def calculator_supported(tokenizer) -> bool:
    """True when every character of a result (``0-9``, ``.``, ``-``) is one token of its own."""
    chars, _ = _vocab_tables(tokenizer)
    return len(chars) == 12


class CalculatorLogitsProcessor(LogitsProcessor):
    """Writes the result of each arithmetic expression the model ends with ``=`` (module doc).

    ``prompt_length``: the (left-padded) input length, so only generated tokens are read.
    ``uses``: how many results it wrote, for the evaluation summary.
    """

    def __init__(self, tokenizer, prompt_length: int, tail_tokens: int = 48):
        if not calculator_supported(tokenizer):
            raise ValueError(f"{type(tokenizer).__name__}: the calculator needs one token per digit, "
                             "'.' and '-'; this tokenizer has no such tokens")
        self.tokenizer = tokenizer
        self.prompt_length = prompt_length
        self.tail_tokens = tail_tokens
        self.char_ids, self.digit_mask = _vocab_tables(tokenizer)
        self.queues: dict[int, list[int]] = {}
        self.block_digit: set[int] = set()
        self.uses = 0

    def _force(self, scores: torch.Tensor, row: int, token_id: int) -> None:
        scores[row] = float("-inf")
        scores[row, token_id] = 0.0

    def _mask_for(self, scores: torch.Tensor) -> torch.Tensor:
        """The digit mask sized to the model's vocabulary (models pad it beyond the tokenizer's)
        and on its device: built at the first step, reused at every later one."""
        mask = self.digit_mask
        if mask.shape[0] != scores.shape[1] or mask.device != scores.device:
            width = scores.shape[1]
            mask = torch.cat([mask, mask.new_zeros(max(0, width - mask.shape[0]))])[:width]
            self.digit_mask = mask.to(scores.device)
        return self.digit_mask

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        mask = self._mask_for(scores)
        for row in range(scores.shape[0]):
            queue = self.queues.get(row)
            if queue:
                self._force(scores, row, queue.pop(0))
                if not queue:
                    self.block_digit.add(row)
                continue
            wants_digit = bool(mask[int(scores[row].argmax())])
            if row in self.block_digit:
                self.block_digit.discard(row)
                if wants_digit:  # the result is complete: no extra digit may extend it
                    scores[row, mask] = float("-inf")
                continue
            if not wants_digit:
                continue
            generated = input_ids[row, self.prompt_length:][-self.tail_tokens:]
            result = pending_result(self.tokenizer.decode(generated, skip_special_tokens=True))
            if result is None:
                continue
            ids = [self.char_ids[ch] for ch in result]
            self.uses += 1
            self._force(scores, row, ids[0])
            if ids[1:]:
                self.queues[row] = ids[1:]
            else:
                self.block_digit.add(row)
        return scores
