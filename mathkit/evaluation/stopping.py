"""When a completion is over: stop strings and the end of a marked final answer.

A small model that has written ``#### 18`` often goes on for hundreds of tokens ("Question: ..."
and a new problem of its own), and in a static batch every such row keeps the whole batch
decoding. :class:`StopRule` says where a completion ends, from its decoded text alone:

* **stop strings** (lm-evaluation-harness's ``until``, e.g. ``"Question:"``): the completion is
  cut just before the first one, as the harness cuts it;
* **answer end** (``answer_end=True``): at the first newline after a line that holds a marked
  final answer, a closed ``\\boxed{...}`` or ``#### <number>``, outside an unclosed ``<think>``.
  The strict extractor (:func:`mathkit.evaluation.extraction.extract_answer_strict`) must already
  find an answer in the text up to there, so a stopped completion always has one.

Answer end is safe for scoring when the extractor reads the *first* marked answer (``####``) and
when the model writes one boxed answer; a model that boxes a second, different answer after a
newline is scored on the first one instead. On the committed records of notebooks 00 and 02
(860 full SmolLM2 completions, base and LoRA-tuned), the rule would have cut 60 and changed no
extracted answer and no verdict, lenient or strict (``benchmarks/answer_end_rescoring.py``; 33 of
the 60 had run into the token limit and now end). Rescore a new model's records the same way.

:class:`StopRuleCriteria` applies a rule inside transformers' ``generate`` (one flag per row).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from transformers import StoppingCriteria

from mathkit.data.markers import THINK_END, THINK_START
from mathkit.evaluation.extraction import extract_answer_strict, last_boxed

_HASH_LINE_RE = re.compile(r"####\s*\\?\$?\s*-?\.?\d")


def _line_has_marked_answer(line: str) -> bool:
    """A ``#### <number>`` or a ``\\boxed{...}`` that closes on this line."""
    if _HASH_LINE_RE.search(line):
        return True
    return ("\\boxed" in line or "\\fbox" in line) and last_boxed(line) is not None


def _inside_open_think(text: str) -> bool:
    return THINK_START in text and THINK_END not in text.rsplit(THINK_START, 1)[1]


def answer_end(text: str, start: int = 0) -> int | None:
    """Index of the first newline at or after ``start`` that ends a line holding a marked final
    answer the strict extractor reads, or None. The completion is ``text[:index]``."""
    pos = text.find("\n", start)
    while pos >= 0:
        line_start = text.rfind("\n", 0, pos) + 1
        head = text[:pos]
        if (_line_has_marked_answer(text[line_start:pos]) and not _inside_open_think(head)
                and extract_answer_strict(head) is not None):
            return pos
        pos = text.find("\n", pos + 1)
    return None


@dataclass(frozen=True)
class StopRule:
    """Where a completion ends in its text: before a stop string, or at the answer end."""

    stop_strings: tuple[str, ...] = ()
    answer_end: bool = False

    def __post_init__(self):
        object.__setattr__(self, "stop_strings", tuple(s for s in self.stop_strings if s))

    @property
    def active(self) -> bool:
        return bool(self.stop_strings) or self.answer_end

    def cut(self, text: str) -> int | None:
        """Length of the completion within ``text`` (None: it has not ended)."""
        cuts = [i for i in (text.find(s) for s in self.stop_strings) if i >= 0]
        if self.answer_end:
            end = answer_end(text)
            if end is not None:
                cuts.append(end)
        return min(cuts) if cuts else None

    def apply(self, text: str) -> tuple[str, bool]:
        """(``text`` cut where the rule ends it, whether it was cut)."""
        n = self.cut(text)
        return (text, False) if n is None else (text[:n], True)


class RowStopper:
    """Per-row incremental check of a :class:`StopRule` on generated token ids.

    The text is decoded again only when a step could have completed a stop: every step for stop
    strings, only steps whose token holds a newline for answer ends (a cheap test on the piece).
    """

    def __init__(self, rule: StopRule, tokenizer):
        self.rule = rule
        self.tokenizer = tokenizer
        self._newline_ids: dict[int, bool] = {}

    def _has_newline(self, token_id: int) -> bool:
        if token_id not in self._newline_ids:
            self._newline_ids[token_id] = "\n" in self.tokenizer.decode([token_id])
        return self._newline_ids[token_id]

    def stopped(self, generated: list[int]) -> bool:
        """Whether ``generated`` (the new tokens of one row) has reached the rule's end."""
        if not self.rule.active or not generated:
            return False
        if not self.rule.stop_strings and not self._has_newline(generated[-1]):
            return False
        return self.rule.cut(self.tokenizer.decode(generated, skip_special_tokens=True)) is not None


class StopRuleCriteria(StoppingCriteria):
    """A :class:`StopRule` for ``model.generate``: one done flag per row of the batch
    (transformers then pads that row and drops it from the "unfinished" set). ``lengths``
    records where each row ended, so that its padding can be dropped exactly."""

    def __init__(self, rule: StopRule, tokenizer, prompt_length: int):
        self.stopper = RowStopper(rule, tokenizer)
        self.prompt_length = prompt_length
        self.lengths: dict[int, int] = {}  # row -> new tokens when the rule first ended it

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        new = input_ids[:, self.prompt_length:].tolist()
        done = [self.stopper.stopped(row) for row in new]
        for i, stopped in enumerate(done):
            if stopped:
                self.lengths.setdefault(i, len(new[i]))
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)
