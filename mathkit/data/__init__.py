"""One loader for every math dataset: ``load_math_dataset(name, split, n, seed, **options)``.

Every source returns a ``datasets.Dataset`` with the unified columns of
:mod:`mathkit.data.schema` (id, source, problem, solution, answer, template, category).

Offline sources (package data, no network; the defaults everywhere):

==================  =======================================================  ==========================================
name                what                                                     options
==================  =======================================================  ==========================================
gsm8k_originals     the 100 real GSM8K test problems of GSM-Symbolic         language="eng", keep_calculator=False
gsm_symbolic        seeded variants of those 100 templates                   language, per_template, include_originals,
                                                                             keep_calculator
champ               270 CHAMP competition problems (evaluation only)         -
arithmetic          digit arithmetic (:mod:`mathkit.data.arithmetic.problems`)    min_digits=1, max_digits=3,
                                                                             ops=("+","-","*"), style="question"|"bare"
sympy_problems      equations, derivatives, integrals, determinants,          kinds=[...] (see sympy_problems.KINDS)
                    eigenvalues, solved with sympy
==================  =======================================================  ==========================================

Hub sources (Kaggle/Colab; fail fast offline with HubUnavailableError): see :mod:`mathkit.data.hub`.
A path (``.json``, ``.jsonl``, ``.csv``, ``.parquet`` file, or a folder) loads your own problems
(option ``columns={"problem": "question", ...}``), see :mod:`mathkit.data.local_files`.

Splits: GSM sources split by template (``gsm_symbolic.HELD_OUT_TEMPLATES``); generators split by a
hash of the problem (arithmetic also has a ``"val"`` bucket); hub sets use their own splits. ``n`` and
``seed`` subsample deterministically (for one seed, the rows of a smaller ``n`` are among those of a
larger one).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from mathkit.data import champ, gsm_symbolic, sympy_problems
from mathkit.data.arithmetic import problems as arithmetic_problems
from mathkit.data.combine import SourceSpec, combine_sources
from mathkit.data.formatting import (DEFAULT_SYSTEM_PROMPT, STYLE_INSTRUCTIONS, STYLES, build_prompt,
                                     completion_text, format_dataset, format_example)
from mathkit.data.hub import HUB_SOURCES, OFFLINE_SOURCES, check_hub_reachable, load_hub, map_row
from mathkit.data.local_files import load_local, looks_like_path
from mathkit.data.schema import COLUMNS, check_options, subsample, to_dataset
from mathkit.errors import DataError

__all__ = [
    "COLUMNS", "DEFAULT_SYSTEM_PROMPT", "HUB_SOURCES", "OFFLINE_SOURCES", "STYLES", "STYLE_INSTRUCTIONS",
    "SourceSpec", "build_prompt", "check_hub_reachable", "combine_sources", "completion_text",
    "format_dataset", "format_example", "known_sources", "load_math_dataset", "map_row",
]


def _gsm8k_originals(split, n, seed, language="eng", keep_calculator=False):
    return gsm_symbolic.load_originals(split, language, keep_calculator)


def _gsm_symbolic(split, n, seed, language="eng", per_template=None, include_originals=None,
                  keep_calculator=False):
    return gsm_symbolic.load_variants(split, n, seed, language, per_template, include_originals, keep_calculator)


def _champ(split, n, seed):
    return champ.load_champ(split)


def _arithmetic(split, n, seed, min_digits=1, max_digits=3, ops=("+", "-", "*"), style="question"):
    return arithmetic_problems.generate(n, seed, split, min_digits=min_digits, max_digits=max_digits,
                                        ops=tuple(ops), style=style)


def _sympy_problems(split, n, seed, kinds=None):
    return sympy_problems.generate(n, seed, split, kinds)


_OFFLINE: dict[str, tuple[Callable[..., list[dict]], tuple[str, ...]]] = {
    "gsm8k_originals": (_gsm8k_originals, ("language", "keep_calculator")),
    "gsm_symbolic": (_gsm_symbolic, ("language", "per_template", "include_originals", "keep_calculator")),
    "champ": (_champ, ()),
    "arithmetic": (_arithmetic, ("min_digits", "max_digits", "ops", "style")),
    "sympy_problems": (_sympy_problems, ("kinds",)),
}


def known_sources() -> dict[str, str]:
    """Every source name → ``"offline"`` or the hub repo it streams from."""
    return {**{k: "offline" for k in _OFFLINE}, **{k: s.repo for k, s in HUB_SOURCES.items()}}


def load_math_dataset(name: str | Path, split: str | None = None, n: int | None = None, seed: int = 0,
                      **options: Any):
    """Load a math source as a unified ``datasets.Dataset`` (see the module docstring for names).

    ``split``: ``"train"``/``"test"``/None (source-specific meaning); ``n``: how many rows
    (None = the source's natural size); ``seed``: generation and subsampling seed.
    """
    if n is not None and n < 0:
        raise DataError(f"n must be >= 0 or None, got {n}")
    if isinstance(name, Path) or (name not in _OFFLINE and name not in HUB_SOURCES and looks_like_path(name)):
        check_options("a local file", options, ["columns"])
        return subsample(load_local(name, split, options.get("columns")), n, seed)
    if name in _OFFLINE:
        loader, allowed = _OFFLINE[name]
        check_options(name, options, allowed)
        return subsample(to_dataset(loader(split, n, seed, **options)), n, seed)
    if name in HUB_SOURCES:
        return load_hub(name, split, n, seed, **options)
    raise DataError(f"unknown dataset {name!r}. Offline sources: {sorted(_OFFLINE)}; hub sources: "
                    f"{sorted(HUB_SOURCES)}; or a path to a .json/.jsonl/.csv/.parquet file or folder")
