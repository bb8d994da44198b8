"""Answer extraction and checking for math completions.

Two extractors, like lm-evaluation-harness's strict and flexible match on GSM8K:

* :func:`extract_answer_strict` trusts only an explicitly marked answer: ``\\boxed{...}``,
  ``#### x``, or the text after ``</think>``. It measures whether a model follows the format.
* :func:`extract_answer` (lenient) falls back to "The answer is x", "Therefore ... x" and finally
  the last number. It measures whether the model got the number, whatever it wrote around it.

:func:`is_correct` compares an extracted answer with the gold one: plain numbers exactly (or
within a tolerance), everything else through ``math-verify`` (symbolic equivalence: ``0.5`` vs
``\\frac{1}{2}``, ``\\sqrt{8}`` vs ``2\\sqrt{2}``, intervals, sets). Anything that cannot be
parsed or times out scores as wrong, never as an error.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from decimal import Decimal, InvalidOperation
from fractions import Fraction

from mathkit.data.markers import THINK_END

log = logging.getLogger(__name__)

VERIFY_TIMEOUT_S = 5  # per parse / comparison, as math-verify's own default

# A number as models write it: optional sign, thousands groups or plain digits, decimals, an
# optional "/denominator". Signs glued to a previous word or digit ("3-4") are dropped later.
_NUMBER = r"-?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?(?:\s*/\s*\d+(?:\.\d+)?)?|-?\.\d+"
_LATEX_FRAC = r"-?\\[dt]?frac\{\s*-?\d+\s*\}\{\s*\d+\s*\}"
_CANDIDATE_RE = re.compile(rf"{_LATEX_FRAC}|{_NUMBER}")
_PLAIN_NUMBER_RE = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)")
_PLAIN_FRACTION_RE = re.compile(r"[-+]?\d+/\d+")
_SIMPLE_FRAC_RE = re.compile(r"(-?)\\frac\{\s*(-?\d+)\s*\}\{\s*(\d+)\s*\}")
_HASH_RE = re.compile(r"####\s*([^\n]*)")
# "#### 18", "#### $1,234.50"; not when an operator follows ("#### 16 - 3 - 4 = 9")
_HASH_NUMBER_RE = re.compile(r"\s*\\?\$?\s*(-?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?(?:/\d+)?)"
                             r"(?![\d^(]|\s*[-+*/×x]\s*[\d(])")
_ANSWER_IS_RE = re.compile(
    r"(?:final\s+answer|answer)\s*(?:is|was|would\s+be|will\s+be|equals|=|:)\s*:?\s*([^\n]+)",
    re.IGNORECASE)
_THEREFORE_RE = re.compile(r"\b(?:therefore|thus|hence)\b[,:]?\s*([^\n]*)", re.IGNORECASE)
_TEXT_CMD_RE = re.compile(
    r"\\(?:text|textbf|textit|textrm|mathrm|mathbf|mbox|operatorname)\s*\{([^{}]*)\}")
_UNITS = ("cm", "mm", "km", "m", "kg", "g", "mg", "ml", "l", "s", "sec", "min", "mins", "h",
          "hr", "hrs", "ft", "in", "mi", "mph", "lb", "lbs", "oz", "cents", "th", "st", "nd", "rd")
_UNIT_SUFFIX_RE = re.compile(rf"({_PLAIN_NUMBER_RE.pattern}|[-+]?\d+/\d+)\s*(?:{'|'.join(_UNITS)})\.?",
                             re.IGNORECASE)
_WORDS_AFTER_NUMBER_RE = re.compile(
    rf"({_PLAIN_NUMBER_RE.pattern}|[-+]?\d+/\d+)\s+[A-Za-z][A-Za-z\s'’.,-]*")
_WORD_ANSWER_RE = re.compile(r"[A-Za-z]{2,}(?:[\s-][A-Za-z]+)*")
# What small models copy from an instruction such as "The final answer is $\boxed{answer}$."
_PLACEHOLDERS = {"answer", "final answer", "your answer", "the answer", "answer here", "number"}


# --------------------------------------------------------------------------------------------
# locating candidates
# --------------------------------------------------------------------------------------------
def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``), nested braces included."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    i = text.find("{", start)
    if i < 0 or text[start:i].strip() not in ("\\boxed", "\\fbox"):
        return None
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1:j]
    return None  # unbalanced: the completion was cut off inside the box


def _numbers(text: str) -> list[str]:
    """All number-like substrings in order, with signs only where they are really signs."""
    out = []
    for m in _CANDIDATE_RE.finditer(text):
        s = m.group(0)
        if s.startswith("-") and m.start() > 0 and (text[m.start() - 1].isalnum()
                                                    or text[m.start() - 1] in ")]}"):
            s = s[1:]  # "3-4", "x-2": a minus between terms, not a negative number
        if m.start() > 0 and text[m.start() - 1] in "^_":
            continue  # exponent or subscript (x^2, a_1): not an answer
        out.append(s)
    return out


def _think_tail(text: str) -> str | None:
    """Text after the last ``</think>``, or None when there is no closing think tag."""
    if THINK_END not in text:
        return None
    return text.rsplit(THINK_END, 1)[1]


# --------------------------------------------------------------------------------------------
# normalization
# --------------------------------------------------------------------------------------------
def _canonical_number(s: str) -> str:
    """``"18.00"`` -> ``"18"``, ``"+0.50"`` -> ``"0.5"``, ``"1 / 2"`` -> ``"1/2"``."""
    if _PLAIN_NUMBER_RE.fullmatch(s):
        try:
            d = Decimal(s)
        except InvalidOperation:
            return s
        if d == d.to_integral_value():
            return str(int(d))
        return format(d.normalize(), "f")
    return s


def _top_level(s: str, char: str) -> list[int]:
    """Positions of ``char`` outside any bracket: the ``=`` of ``x = 5`` but not of
    ``sum_(i=1)^n``."""
    depth, out = 0, []
    for i, c in enumerate(s):
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth = max(0, depth - 1)
        elif c == char and depth == 0:
            out.append(i)
    return out


def _value_of_equation(s: str) -> str:
    """``"x = 5"`` -> ``"5"``, ``"16 - 3 - 4 = 9"`` -> ``"9"``, ``"x = y = 0"`` -> ``"0"``; but a
    system (``"x=6, y=5"``, ``"f(x)=0 or f(x)=1"``) or an inequality stays whole, since any one
    of its values alone is not the answer."""
    if re.search(r"[<>!]=|\\[lg]eq?|\\neq|[≤≥≠]", s):
        return s
    eqs = _top_level(s, "=")
    if not eqs or _top_level(s, ",") or re.search(r"\b(?:and|or)\b", s):
        return s
    parts = [s[:eqs[0]]] + [s[a + 1:b] for a, b in zip(eqs, eqs[1:] + [len(s)])]
    parts = [p.strip() for p in parts if p.strip()]
    return parts[-1] if parts else s


def normalize_answer(text: str | None) -> str | None:
    """Canonical string for one extracted answer, or None when nothing is left.

    Strips what does not change the value: ``$`` and other math delimiters, currency, thousands
    separators, ``%``, degree signs, trailing periods, markdown emphasis, unit words after a
    number, ``\\text{}`` wrappers and a leading ``x =``. Simple ``\\frac{a}{b}`` becomes ``a/b``
    so that it compares as a number. Other LaTeX is kept for math-verify.
    """
    if text is None:
        return None
    s = str(text).strip()
    s = s.replace("\u2212", "-").replace("\u2013", "-").replace("\u00a0", " ")
    s = s.strip("*`'\" \t\n")
    s = s.replace("\\$", "$").replace("$", "")
    for delim in ("\\(", "\\)", "\\[", "\\]", "\\left", "\\right", "\\displaystyle"):
        s = s.replace(delim, "")
    s = re.sub(r"\\[,;:! ]|~", " ", s)
    s = re.sub(r"\\[dt]frac", r"\\frac", s)
    s = s.replace("{,}", "").replace("\\%", "%").replace("\u00b0", "")
    s = re.sub(r"\^\s*\{?\\circ\}?", "", s)
    s = _TEXT_CMD_RE.sub(lambda m: f" {m.group(1)} ", s)
    s = s.strip()
    s = _value_of_equation(s)
    s = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", s)  # 1,000 -> 1000 (but not "1, 2" or "(1,2]")
    s = re.sub(r"(?<=\d)\s*/\s*(?=\d)", "/", s)
    s = re.sub(r"^(?:[$€£¥]|usd|rs\.?)\s*", "", s, flags=re.IGNORECASE)
    s = s.strip().rstrip(".").strip()
    s = s.rstrip("%").strip()
    s = s.strip("*` ")
    m = _UNIT_SUFFIX_RE.fullmatch(s) or _WORDS_AFTER_NUMBER_RE.fullmatch(s)
    if m:
        s = m.group(1)  # "5 apples", "12cm", "18 dollars per day"
    m = _SIMPLE_FRAC_RE.fullmatch(s)
    if m:
        sign = "-" if (m.group(1) == "-") != m.group(2).startswith("-") else ""
        s = f"{sign}{m.group(2).lstrip('-')}/{m.group(3)}"
    s = s.lstrip("+") if _PLAIN_NUMBER_RE.fullmatch(s) or _PLAIN_FRACTION_RE.fullmatch(s) else s
    s = _canonical_number(s)
    return s or None


def _is_simple(s: str) -> bool:
    """A clean answer: a number, a fraction, or a short formula without prose."""
    if _PLAIN_NUMBER_RE.fullmatch(s) or _PLAIN_FRACTION_RE.fullmatch(s):
        return True
    if "\\" in s or re.fullmatch(r"[\d\s+\-*/^().,\[\]{}a-zA-Z]*", s) and not re.search(
            r"[A-Za-z]{3,}", s):
        return True
    return False


def _boxed_answer(text: str) -> str | None:
    """The normalized content of the last box, unless it is a copied placeholder."""
    boxed = last_boxed(text)
    ans = normalize_answer(boxed) if boxed is not None else None
    if ans is None or ans.strip("<>[] ").lower() in _PLACEHOLDERS:
        return None
    return ans


def _answer_from_phrase(phrase: str) -> str | None:
    """The answer inside the rest of a sentence such as "The answer is ..."."""
    if "\\boxed" in phrase or "\\fbox" in phrase:
        return _boxed_answer(phrase)
    phrase = re.split(r"\.\s", phrase.strip(), maxsplit=1)[0]  # stop at the end of the sentence
    # "$\frac{1}{2}$" is math; "$12 = $48" is two prices: only LaTeX-looking spans count
    math_spans = [m for m in re.findall(r"\$([^$]+)\$", phrase) if re.search(r"[\\^{}]", m)]
    if math_spans:
        return normalize_answer(math_spans[0])
    clean = normalize_answer(phrase)
    if clean is None:
        return None
    if _is_simple(clean):
        return clean
    nums = _numbers(clean)
    if nums:
        return normalize_answer(nums[0])
    if _WORD_ANSWER_RE.fullmatch(clean) and len(clean.split()) <= 3:
        return clean.lower()  # "yes", "no", "Tuesday"
    return None


def _from_marked(text: str) -> str | None:
    """``\\boxed{}`` first, then ``#### x``."""
    ans = _boxed_answer(text)
    if ans is not None:
        return ans
    # The first "####" is where the model committed; small models often ramble on afterwards
    # ("#### 8\n#### 9", "#### 70 = 7 * 10"), so take the number right after it, as lm-eval does.
    for line in _HASH_RE.findall(text):
        m = _HASH_NUMBER_RE.match(line)
        ans = normalize_answer(m.group(1)) if m else _answer_from_phrase(line)
        if ans is not None:
            return ans
    return None


def _lenient(text: str) -> str | None:
    ans = _from_marked(text)
    if ans is not None:
        return ans
    for m in reversed(list(_ANSWER_IS_RE.finditer(text))):
        ans = _answer_from_phrase(m.group(1))
        if ans is not None:
            return ans
    for m in reversed(list(_THEREFORE_RE.finditer(text))):
        sentence = re.split(r"\.\s", m.group(1), maxsplit=1)[0]
        nums = _numbers(sentence)
        if nums:
            return normalize_answer(nums[-1])
    nums = _numbers(text)
    if nums:
        return normalize_answer(nums[-1])
    return None


# --------------------------------------------------------------------------------------------
# public extractors
# --------------------------------------------------------------------------------------------
def extract_answer(text: str | None) -> str | None:
    """Lenient extraction: boxed, ``####``, "The answer is", "Therefore ...", last number.

    With a ``</think>`` the text after it is searched first, then the whole completion.
    Returns the normalized answer string (see :func:`normalize_answer`) or None.
    """
    if not text:
        return None
    tail = _think_tail(text)
    if tail is not None and tail.strip():
        ans = _lenient(tail)
        if ans is not None:
            return ans
    return _lenient(text)


def extract_answer_strict(text: str | None) -> str | None:
    """Strict extraction: only ``\\boxed{}``, ``#### x``, or an answer after ``</think>``.

    An unfinished ``<think>`` without its closing tag gives None.
    """
    if not text:
        return None
    tail = _think_tail(text)
    if tail is not None:
        return _lenient(tail) if tail.strip() else None
    if "<think>" in text:
        return None
    return _from_marked(text)


# --------------------------------------------------------------------------------------------
# checking
# --------------------------------------------------------------------------------------------
def to_number(answer: str | None) -> Fraction | None:
    """Exact value of a normalized plain number or fraction (``"18"``, ``"-0.5"``, ``"3/4"``)."""
    if answer is None:
        return None
    s = answer.strip()
    try:
        if _PLAIN_NUMBER_RE.fullmatch(s):
            return Fraction(Decimal(s))
        if _PLAIN_FRACTION_RE.fullmatch(s):
            return Fraction(s)
    except (InvalidOperation, ValueError, ZeroDivisionError):
        return None
    return None


def _wrap_latex(s: str) -> str:
    """math-verify reads bare LaTeX badly (``2\\sqrt{2}`` parses as 2): give it ``$...$``."""
    if "$" in s or s.lstrip().startswith("\\boxed"):
        return s
    return f"${s}$"


def _math_verify_equal(gold: str, pred: str) -> bool:
    from math_verify import parse, verify

    # math-verify's timeout uses signal.alarm, which only works in the main thread.
    timeout = VERIFY_TIMEOUT_S if threading.current_thread() is threading.main_thread() else None
    gold_parsed = parse(_wrap_latex(gold), parsing_timeout=timeout)
    pred_parsed = parse(_wrap_latex(pred), parsing_timeout=timeout)
    if not gold_parsed or not pred_parsed:
        return False
    return bool(verify(gold_parsed, pred_parsed, timeout_seconds=timeout))


_GOLD_ALTERNATIVE_RE = re.compile(
    r",?\s+or\s+(?:equivalently|approximately|an\s+equivalent\s+form\s+such\s+as)\s+", re.I)
_NESTED = r"(?:[^()]|\([^()]*\))*"
_TRAILING_REMARK_RE = re.compile(rf"\s+\({_NESTED}[A-Za-z]{{3,}}{_NESTED}\)\s*\.?$")
_ONLY_VALUE_RE = re.compile(r"^(.+?)\s+is\s+the\s+only\s+possible\s+value\.?$", re.I)
_PROSE_VALUE_RE = re.compile(r"\b(?:is\s+equal\s+to|equals|is)\s+(\S+?)\.?$", re.I)


def gold_candidates(gold: str) -> list[str]:
    """The acceptable forms of a gold answer, the answer as written first.

    Some datasets (CHAMP) write answers as prose: ``"C(10, 5), or equivalently 252"``,
    ``"0 (i.e., no such values)"``, ``"3 is the only possible value"``, ``"The limit exists
    and is equal to 2/3"``. A prediction matching any of the forms is right.
    """
    text = str(gold).strip()
    out = [text]
    core = _TRAILING_REMARK_RE.sub("", text).strip()
    for alt in _GOLD_ALTERNATIVE_RE.split(core):
        alt = alt.strip()
        out.append(alt)
        m = _ONLY_VALUE_RE.match(alt)
        if m:
            out.append(m.group(1))
        elif len(re.findall(r"[A-Za-z]{2,}", alt)) >= 3:
            m = _PROSE_VALUE_RE.search(alt)
            if m:
                out.append(m.group(1))
    return list(dict.fromkeys(a for a in out if a))


def _equal(pred: str, ref: str, rel_tol: float) -> bool:
    """Normalized prediction vs one normalized gold form."""
    if pred == ref:
        return True
    p_num, g_num = to_number(pred), to_number(ref)
    if p_num is not None and g_num is not None:
        return p_num == g_num or math.isclose(float(p_num), float(g_num), rel_tol=rel_tol,
                                              abs_tol=1e-12)
    if _WORD_ANSWER_RE.fullmatch(ref) and "\\" not in ref:
        return pred.lower() == ref.lower()  # math-verify would read "yes" as E*s*y
    return _math_verify_equal(ref, pred)


def is_correct(prediction: str | None, gold: str | None, *, rel_tol: float = 1e-6) -> bool:
    """Whether an extracted ``prediction`` equals the ``gold`` answer (any of its
    :func:`gold_candidates`).

    Plain numbers and fractions compare exactly, else within ``rel_tol`` (so 18 == 18.00 and
    0.5 == 1/2); word answers compare case-insensitively; everything else goes through
    math-verify (gold first). Anything that fails to parse or times out is wrong.
    """
    try:
        pred = normalize_answer(prediction)
        if pred is None or gold is None:
            return False
        for form in gold_candidates(str(gold)):
            ref = normalize_answer(form)
            if ref is not None and _equal(pred, ref, rel_tol):
                return True
        return False
    except Exception as err:  # noqa: BLE001 - a bad answer is a wrong answer, never a crash
        log.debug("answer check failed for %r vs %r: %s", prediction, gold, err)
        return False


def score_completion(completion: str, gold: str) -> dict:
    """Both extractions of one completion and whether each is correct."""
    lenient = extract_answer(completion)
    strict = extract_answer_strict(completion)
    return {
        "extracted": lenient,
        "extracted_strict": strict,
        "correct": is_correct(lenient, gold),
        "correct_strict": is_correct(strict, gold),
    }
