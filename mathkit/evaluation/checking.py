"""Answer checking: is an extracted answer equal to the gold one?

Each gold answer is parsed once (:func:`parse_gold`) into the forms that can be checked:

* a **number** (``18``, ``-0.5``, ``3/4``): integers compare exactly; a tolerance (``rel_tol``)
  applies only when both values are non-integers and one is written as a decimal
  (``0.3333333`` vs ``1/3``), so ``1000001`` is never ``1000000``;
* a **word** (``Yes``, ``No``): compared case-insensitively;
* an **expression** that math-verify parses as a whole (``(n(n+1)/2)^2``, ``[-1, 1]``,
  ``\\sqrt{3}/3``): compared symbolically by math-verify, gold first, under a timeout.

Prose golds as CHAMP writes them are reduced to their value where the prose says which one it is
(``"C(10, 5), or equivalently 252"``, ``"100 (i.e., all values)"``, ``"3 is the only possible
value"``). A gold with no single checkable answer (free text, several values such as
``"376 and 625"``, or math that does not parse as a whole such as ``sum_(i=1)^n i^3``) is
**ungradable**: :class:`Gold` says why, and the evaluator leaves it out of accuracy and lists it.

A prediction must be a whole answer of the gold's kind: a fragment (``1/(x^``) or prose never
matches, and anything that fails to parse or times out is wrong, never an error.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from functools import lru_cache

from mathkit.evaluation.extraction import (
    PLAIN_FRACTION_RE,
    PLAIN_NUMBER_RE,
    canonical_answer,
    is_fragment,
    top_level,
)

log = logging.getLogger(__name__)

VERIFY_TIMEOUT_S = 5  # per parse / comparison, as math-verify's own default

_ALTERNATIVE_RE = re.compile(
    r",?\s+or\s+(equivalently|approximately|an\s+equivalent\s+form\s+such\s+as)\s+", re.I)
_NESTED = r"(?:[^()]|\([^()]*\))*"
_TRAILING_REMARK_RE = re.compile(rf"\s+\({_NESTED}[A-Za-z]{{3,}}{_NESTED}\)\s*\.?$")
_ONLY_VALUE_RE = re.compile(r"^(.+?)\s+is\s+the\s+only\s+possible\s+value\.?$", re.I)
_PROSE_VALUE_RE = re.compile(r"\b(?:is\s+equal\s+to|equals|is)\s+(\S+?)\.?$", re.I)
_SEVERAL_VALUES_RE = re.compile(r"\b(?:and|or)\b|±|∓|\\pm|\\mp|;")
_LIST_WORDS = {"and", "or"}
_SINGLE_WORD_RE = re.compile(r"[A-Za-z]+")
# Function names written without a backslash (LaTeX commands, with one, are never prose)
_FUNCTION_WORDS = {"sqrt", "floor", "ceil", "log", "exp", "sin", "cos", "tan", "sec", "csc", "cot",
                   "gcd", "lcm", "min", "max", "mod", "inf", "infty", "binom", "sum", "prod", "lim"}


def to_number(answer: str | None) -> Fraction | None:
    """Exact value of a canonical plain number or fraction (``"18"``, ``"-0.5"``, ``"3/4"``)."""
    if answer is None:
        return None
    s = answer.strip()
    try:
        if PLAIN_NUMBER_RE.fullmatch(s):
            return Fraction(Decimal(s))
        if PLAIN_FRACTION_RE.fullmatch(s):
            return Fraction(s)
    except (InvalidOperation, ValueError, ZeroDivisionError):
        return None
    return None


def _prose_words(s: str) -> set[str]:
    """Words of ``s`` that are not mathematics (``for``, ``all``, ``and``, ``yes``)."""
    return {w.lower() for slash, w in re.findall(r"(\\?)([A-Za-z]{3,})", s)
            if not slash and w.lower() not in _FUNCTION_WORDS}


def _is_prose(s: str) -> bool:
    return bool(_prose_words(s))


def _wrap_latex(s: str) -> str:
    """math-verify reads bare LaTeX badly (``2\\sqrt{2}`` parses as 2): give it ``$...$``."""
    return s if "$" in s else f"${s}$"


def _verify_timeout() -> int | None:
    """math-verify's timeout uses signal.alarm, which only works in the main thread."""
    return VERIFY_TIMEOUT_S if threading.current_thread() is threading.main_thread() else None


@lru_cache(maxsize=4096)
def parse_expression(s: str) -> tuple | None:
    """math-verify's parse of a whole expression, or None when it does not parse as one.

    Only LaTeX extraction is used: math-verify's plain-expression fallback pulls the first
    number out of text it cannot parse (``1/(x^`` -> 1), which is how fragments used to match.
    """
    from math_verify import LatexExtractionConfig, parse
    from sympy import Basic, MatrixBase

    if is_fragment(s) or _is_prose(s):
        return None
    try:
        parsed = parse(_wrap_latex(s), extraction_config=[LatexExtractionConfig()],
                       parsing_timeout=_verify_timeout())
    except Exception as err:  # noqa: BLE001 - an unparsable answer is no answer
        log.debug("math-verify could not parse %r: %s", s, err)
        return None
    return tuple(parsed) if any(isinstance(p, (Basic, MatrixBase)) for p in parsed) else None


@dataclass(frozen=True)
class GoldForm:
    """One checkable form of a gold answer: ``kind`` is number, word or expression."""

    text: str
    kind: str
    value: object = None  # Fraction, lower-case word, or math-verify parse


@dataclass(frozen=True)
class Gold:
    """A gold answer parsed once: the forms a prediction may match, or why there are none."""

    text: str
    forms: tuple[GoldForm, ...] = ()
    reason: str | None = None  # why it is ungradable (None when it is gradable)

    @property
    def gradable(self) -> bool:
        return bool(self.forms)

    @property
    def kind(self) -> str:
        """``number``, ``word``, ``expression`` (of the first form) or ``ungradable``."""
        return self.forms[0].kind if self.forms else "ungradable"


def _alternatives(text: str) -> list[str]:
    """``"C(10, 5), or equivalently 252"`` -> both forms; an approximation is not the answer."""
    parts = _ALTERNATIVE_RE.split(text)
    keep = [parts[0]]
    for how, alt in zip(parts[1::2], parts[2::2]):
        if not how.lower().startswith("approx"):
            keep.append(alt)
    return [p.strip() for p in keep if p.strip()]


def _value_in_prose(text: str) -> str:
    """``"3 is the only possible value"`` -> ``3``; ``"The limit exists and is equal to 2/3"``
    -> ``2/3``; ``"100 (i.e., all values)"`` -> ``100``; anything else unchanged."""
    text = _TRAILING_REMARK_RE.sub("", text).strip()
    m = _ONLY_VALUE_RE.match(text)
    if m:
        return m.group(1)
    if len(re.findall(r"[A-Za-z]{2,}", text)) >= 3:
        m = _PROSE_VALUE_RE.search(text)
        if m:
            return m.group(1)
    return text


def _gold_form(text: str) -> tuple[GoldForm | None, str]:
    """One alternative of a gold as a checkable form, or (None, why not)."""
    s = canonical_answer(_value_in_prose(text))
    if s is None:
        return None, "no answer left after clean-up"
    number = to_number(s)
    if number is not None:
        return GoldForm(s, "number", number), ""
    if _SINGLE_WORD_RE.fullmatch(s):
        return GoldForm(s, "word", s.lower()), ""
    prose = _prose_words(s)
    if prose - _LIST_WORDS:
        return None, "free text, not a single value"
    if top_level(s, ",") or _SEVERAL_VALUES_RE.search(s):
        return None, "several values, not a single answer"
    parsed = parse_expression(s)
    if parsed is None:
        return None, "math that math-verify does not parse as a whole"
    return GoldForm(s, "expression", parsed), ""


@lru_cache(maxsize=4096)
def parse_gold(gold: str) -> Gold:
    """The checkable forms of a gold answer (see the module docstring), parsed once."""
    text = str(gold).strip()
    forms, reasons = [], []
    for alt in _alternatives(text):
        form, why = _gold_form(alt)
        if form is not None and form not in forms:
            forms.append(form)
        elif form is None:
            reasons.append(why)
    return Gold(text, tuple(forms), None if forms else (reasons[0] if reasons else "empty"))


def _numbers_equal(pred: Fraction, gold: Fraction, pred_text: str, gold_text: str,
                   rel_tol: float) -> bool:
    if pred == gold:
        return True
    if pred.denominator == 1 or gold.denominator == 1:
        return False  # integers compare exactly
    if "." not in pred_text and "." not in gold_text:
        return False  # two exact fractions that differ
    return math.isclose(float(pred), float(gold), rel_tol=rel_tol)


def _math_verify_equal(gold_parsed, pred: str) -> bool:
    from math_verify import verify

    pred_parsed = parse_expression(pred)
    if pred_parsed is None:
        return False
    return bool(verify(list(gold_parsed), list(pred_parsed), timeout_seconds=_verify_timeout()))


def _matches(pred: str, form: GoldForm, rel_tol: float) -> bool:
    if form.kind == "word":
        return pred.lower() == form.value
    number = to_number(pred)
    if form.kind == "number" and number is not None:
        return _numbers_equal(number, form.value, pred, form.text, rel_tol)
    if number is None and _SINGLE_WORD_RE.fullmatch(pred) and len(pred) > 1:
        return False  # a word is no number or formula (math-verify would read "yes" as E*s*y)
    gold_parsed = form.value if form.kind == "expression" else parse_expression(form.text)
    return gold_parsed is not None and _math_verify_equal(gold_parsed, pred)


def is_correct(prediction: str | None, gold: str | Gold | None, *, rel_tol: float = 1e-6) -> bool:
    """Whether an extracted ``prediction`` equals the ``gold`` answer (a string, parsed with
    :func:`parse_gold`, or a :class:`Gold`). An ungradable gold matches nothing; anything that
    fails to parse or times out is wrong (see the module docstring for the rules)."""
    if prediction is None or gold is None:
        return False
    try:
        gold = gold if isinstance(gold, Gold) else parse_gold(str(gold))
        pred = canonical_answer(prediction)
        if pred is None:
            return False
        return any(_matches(pred, form, rel_tol) for form in gold.forms)
    except Exception as err:  # noqa: BLE001 - a bad answer is a wrong answer, never a crash
        log.debug("answer check failed for %r vs %r: %s", prediction, gold, err)
        return False
