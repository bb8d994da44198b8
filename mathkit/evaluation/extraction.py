"""Answer extraction: the final answer a completion commits to, as one canonical string.

Two extractors, like lm-evaluation-harness's strict and flexible match on GSM8K:

* :func:`extract_answer_strict` trusts only an explicitly marked answer: ``\\boxed{...}``,
  ``#### x``, or the text after ``</think>``. It measures whether a model follows the format.
* :func:`extract_answer` (lenient) falls back to "The answer is x", "Therefore ... x" and finally
  the last number. It measures whether the model got the number, whatever it wrote around it.

Both return :func:`canonical_answer` strings, or None. Two rules keep lucky strings out:

* a fragment is never an answer: ``1/(x^`` (unbalanced brackets, a trailing operator) gives None;
* a completion cut off at the token limit (``finished=False``) is read only up to its last
  complete line or sentence, so the number it was writing when it was cut (``$11`` of ``$110``)
  does not count. Numbered-list markers (``9. We can ...``) are not numbers either.

Checking an answer against the gold one is :mod:`mathkit.evaluation.checking`'s job.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from mathkit.data.markers import THINK_END

# A number as models write it: optional sign, thousands groups or plain digits, decimals, an
# optional "/denominator". Signs glued to a previous word or digit ("3-4") are dropped later.
_NUMBER = r"-?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?(?:\s*/\s*\d+(?:\.\d+)?)?|-?\.\d+"
_LATEX_FRAC = r"-?\\[dt]?frac\{\s*-?\d+\s*\}\{\s*\d+\s*\}"
_CANDIDATE_RE = re.compile(rf"{_LATEX_FRAC}|{_NUMBER}")
PLAIN_NUMBER_RE = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)")
PLAIN_FRACTION_RE = re.compile(r"[-+]?\d+/\d+")
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
_UNIT_SUFFIX_RE = re.compile(rf"({PLAIN_NUMBER_RE.pattern}|[-+]?\d+/\d+)\s*(?:{'|'.join(_UNITS)})\.?",
                             re.IGNORECASE)
_WORDS_AFTER_NUMBER_RE = re.compile(
    rf"({PLAIN_NUMBER_RE.pattern}|[-+]?\d+/\d+)\s+[A-Za-z][A-Za-z\s'’.,-]*")
WORD_ANSWER_RE = re.compile(r"[A-Za-z]{2,}(?:[\s-][A-Za-z]+)*")
# A list item's marker at the start of a line: "9. We can ...", "2) Then ..."
_LIST_MARKER_RE = re.compile(r"(?m)^[ \t]*(?:[-*][ \t]+)?\d+[.)](?=[ \t]|$)")
# Where a complete line or sentence ends (for text cut off at the token limit)
_COMPLETE_END_RE = re.compile(r"\n|[.!?](?=\s)")
# What small models copy from an instruction such as "The final answer is $\boxed{answer}$."
_PLACEHOLDERS = {"answer", "final answer", "your answer", "the answer", "answer here", "number"}
_OPENERS, _CLOSERS = "([{", ")]}"


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
    """All number-like substrings in order, with signs only where they are really signs;
    exponents, subscripts and list markers left out."""
    markers = {m.end() for m in _LIST_MARKER_RE.finditer(text)}
    out = []
    for m in _CANDIDATE_RE.finditer(text):
        s = m.group(0)
        if s.startswith("-") and m.start() > 0 and (text[m.start() - 1].isalnum()
                                                    or text[m.start() - 1] in ")]}"):
            s = s[1:]  # "3-4", "x-2": a minus between terms, not a negative number
        if m.start() > 0 and text[m.start() - 1] in "^_":
            continue  # exponent or subscript (x^2, a_1): not an answer
        if m.end() + 1 in markers:
            continue  # "9." / "9)" opening a list item
        out.append(s)
    return out


def _think_tail(text: str) -> str | None:
    """Text after the last ``</think>``, or None when there is no closing think tag."""
    if THINK_END not in text:
        return None
    return text.rsplit(THINK_END, 1)[1]


def complete_part(text: str) -> str:
    """``text`` up to the end of its last complete line or sentence: what a completion cut off
    at the token limit had finished writing."""
    ends = [m.end() for m in _COMPLETE_END_RE.finditer(text)]
    return text[:ends[-1]] if ends else ""


# --------------------------------------------------------------------------------------------
# canonical form
# --------------------------------------------------------------------------------------------
def _canonical_number(s: str) -> str:
    """``"18.00"`` -> ``"18"``, ``"+0.50"`` -> ``"0.5"``, ``"1 / 2"`` -> ``"1/2"``."""
    if PLAIN_NUMBER_RE.fullmatch(s):
        try:
            d = Decimal(s)
        except InvalidOperation:
            return s
        if d == d.to_integral_value():
            return str(int(d))
        return format(d.normalize(), "f")
    return s


def top_level(s: str, char: str) -> list[int]:
    """Positions of ``char`` outside any bracket: the ``=`` of ``x = 5`` but not of
    ``sum_(i=1)^n``."""
    depth, out = 0, []
    for i, c in enumerate(s):
        if c in _OPENERS:
            depth += 1
        elif c in _CLOSERS:
            depth = max(0, depth - 1)
        elif c == char and depth == 0:
            out.append(i)
    return out


def is_fragment(s: str) -> bool:
    """True for a piece of an expression, never a whole answer: brackets that do not balance
    (``1/(x^``, ``\\frac{1}{``) or a trailing operator (``5 +``, ``2^``)."""
    depth = 0
    for c in s.replace("\\{", "{").replace("\\}", "}"):
        if c in _OPENERS:
            depth += 1
        elif c in _CLOSERS:
            depth -= 1
            if depth < 0:
                return True
    return depth != 0 or bool(re.search(r"[-+*/^_=,\\(]\s*$", s))


def _value_of_equation(s: str) -> str:
    """``"x = 5"`` -> ``"5"``, ``"16 - 3 - 4 = 9"`` -> ``"9"``, ``"x = y = 0"`` -> ``"0"``; but a
    system (``"x=6, y=5"``, ``"f(x)=0 or f(x)=1"``) or an inequality stays whole, since any one
    of its values alone is not the answer."""
    if re.search(r"[<>!]=|\\[lg]eq?|\\neq|[≤≥≠]", s):
        return s
    eqs = top_level(s, "=")
    if not eqs or top_level(s, ",") or re.search(r"\b(?:and|or)\b", s):
        return s
    parts = [s[:eqs[0]]] + [s[a + 1:b] for a, b in zip(eqs, eqs[1:] + [len(s)])]
    parts = [p.strip() for p in parts if p.strip()]
    return parts[-1] if parts else s


def _strip_wrappers(s: str) -> str:
    """Math delimiters, spacing commands, ``\\text{}``, degree signs: what never changes a value."""
    s = s.replace("\u2212", "-").replace("\u2013", "-").replace("\u00a0", " ")
    s = s.strip("*`'\" \t\n")
    s = s.replace("\\$", "$").replace("$", "")
    for delim in ("\\(", "\\)", "\\[", "\\]", "\\left", "\\right", "\\displaystyle"):
        s = s.replace(delim, "")
    s = re.sub(r"\\[,;:! ]|~", " ", s)
    s = re.sub(r"\\[dt]frac", r"\\frac", s)
    s = s.replace("{,}", "").replace("\\%", "%").replace("\u00b0", "")
    s = re.sub(r"\^\s*\{?\\circ\}?", "", s)
    return _TEXT_CMD_RE.sub(lambda m: f" {m.group(1)} ", s).strip()


def canonical_answer(text: str | None) -> str | None:
    """The canonical string of one answer, or None when nothing (or only a fragment) is left.

    Strips what does not change the value: ``$`` and other math delimiters, currency, thousands
    separators, ``%``, degree signs, trailing periods, markdown emphasis, unit words after a
    number, ``\\text{}`` wrappers and a leading ``x =``. Simple ``\\frac{a}{b}`` becomes ``a/b``
    so that it compares as a number; other LaTeX is kept for math-verify.
    """
    if text is None:
        return None
    s = _value_of_equation(_strip_wrappers(str(text).strip()))
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
    s = s.lstrip("+") if PLAIN_NUMBER_RE.fullmatch(s) or PLAIN_FRACTION_RE.fullmatch(s) else s
    s = _canonical_number(s)
    if not s or is_fragment(s):
        return None
    return s


def _is_simple(s: str) -> bool:
    """A clean answer: a number, a fraction, or a short formula without prose."""
    if PLAIN_NUMBER_RE.fullmatch(s) or PLAIN_FRACTION_RE.fullmatch(s):
        return True
    if "\\" in s or re.fullmatch(r"[\d\s+\-*/^().,\[\]{}a-zA-Z]*", s) and not re.search(
            r"[A-Za-z]{3,}", s):
        return True
    return False


# --------------------------------------------------------------------------------------------
# extraction
# --------------------------------------------------------------------------------------------
def _boxed_answer(text: str) -> str | None:
    """The canonical content of the last box, unless it is a copied placeholder."""
    boxed = last_boxed(text)
    ans = canonical_answer(boxed) if boxed is not None else None
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
        return canonical_answer(math_spans[0])
    clean = canonical_answer(phrase)
    if clean is None:
        return None
    if _is_simple(clean):
        return clean
    nums = _numbers(clean)
    if nums:
        return canonical_answer(nums[0])
    if WORD_ANSWER_RE.fullmatch(clean) and len(clean.split()) <= 3:
        return clean.lower()  # "yes", "no", "Tuesday"
    return None


def _is_fragment_phrase(phrase: str) -> bool:
    """True when the sentence after "The answer is" breaks off inside an expression."""
    sentence = re.split(r"\.\s", phrase.strip(), maxsplit=1)[0]
    return is_fragment(_strip_wrappers(sentence).rstrip(". "))


def _from_marked(text: str) -> str | None:
    """``\\boxed{}`` first, then ``#### x``."""
    ans = _boxed_answer(text)
    if ans is not None:
        return ans
    # The first "####" is where the model committed; small models often ramble on afterwards
    # ("#### 8\n#### 9", "#### 70 = 7 * 10"), so take the number right after it, as lm-eval does.
    for line in _HASH_RE.findall(text):
        m = _HASH_NUMBER_RE.match(line)
        ans = canonical_answer(m.group(1)) if m else _answer_from_phrase(line)
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
        if _is_fragment_phrase(m.group(1)):
            return None  # "The final answer is f(x) = 1/(x^": the model's answer is a fragment
    for m in reversed(list(_THEREFORE_RE.finditer(text))):
        sentence = re.split(r"\.\s", m.group(1), maxsplit=1)[0]
        nums = _numbers(sentence)
        if nums:
            return canonical_answer(nums[-1])
    nums = _numbers(text)
    if nums:
        return canonical_answer(nums[-1])
    return None


def extract_answer(text: str | None, *, finished: bool = True) -> str | None:
    """Lenient extraction: boxed, ``####``, "The answer is", "Therefore ...", last number.

    With a ``</think>`` the text after it is searched first, then the whole completion.
    ``finished=False`` (cut off at the token limit): only the complete part is read.
    Returns the :func:`canonical_answer` string or None.
    """
    if not text:
        return None
    if not finished:
        text = complete_part(text)
    tail = _think_tail(text)
    if tail is not None and tail.strip():
        ans = _lenient(tail)
        if ans is not None:
            return ans
    return _lenient(text)


def extract_answer_strict(text: str | None, *, finished: bool = True) -> str | None:
    """Strict extraction: only ``\\boxed{}``, ``#### x``, or an answer after ``</think>``.

    An unfinished ``<think>`` without its closing tag gives None; ``finished=False`` reads only
    the complete part of the text, as :func:`extract_answer` does.
    """
    if not text:
        return None
    if not finished:
        text = complete_part(text)
    tail = _think_tail(text)
    if tail is not None:
        return _lenient(tail) if tail.strip() else None
    if "<think>" in text:
        return None
    return _from_marked(text)
