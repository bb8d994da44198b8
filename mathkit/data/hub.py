"""Math datasets from the Hugging Face hub (Kaggle/Colab), mapped to the unified columns.

Each source is a ``HubSource``: where it lives, which splits it has, whether it is streamed
(large sets: only the rows asked for are downloaded) and a *mapping* function from one hub row
to one unified record. The mapping is separate from the loading so tests feed it in-memory rows.

Column mappings (hub columns → unified columns; every mapping is tested on card-shaped rows):

- ``gsm8k``: ``openai/gsm8k`` config ``main``, splits train (7,473) / test (1,319). problem ← question;
  solution ← answer before ``####`` with calculator annotations ``<<48/2=24>>`` removed;
  answer ← after ``####``; category ``gsm8k``.
- ``math``: ``nlile/hendrycks-MATH-benchmark`` (Hendrycks MATH), train (12,000) / test (500, MATH-500).
  problem ← problem; solution ← solution; answer ← answer, else the last ``\\boxed{}`` of the solution;
  category ``math/<subject>`` (or ``type`` in other mirrors); options ``subjects``, ``levels``.
- ``mathx``: ``XenArcAI/MathX-5M``, train, streamed. problem ← question (or problem);
  solution ← generated_solution without ``<think>`` tags; answer ← expected_answer; category ``mathx``.
- ``numinamath``: ``PrimeIntellect/NuminaMath-QwQ-CoT-5M``, train, streamed. problem ← prompt;
  solution ← response without ``<think>`` tags; answer ← ground_truth (its ``\\boxed{}`` content if
  boxed); rows with ``correct`` False skipped (option ``only_correct=True``); category ``numinamath``.
- ``metamathqa``: ``meta-math/MetaMathQA``, train, streamed. problem ← query; solution ← response
  before "The answer is:"; answer ← after it; category ``metamath/<type>`` (GSM_Rephrased, MATH_AnsAug...).
- ``openmathinstruct2``: ``nvidia/OpenMathInstruct-2``, train (also train_1M/2M/5M), streamed.
  problem ← problem; solution ← generated_solution; answer ← expected_answer;
  category ``openmathinstruct2/<problem_source>``.
- ``mathinstruct``: ``TIGER-Lab/MathInstruct``, train, streamed. problem ← instruction; solution ←
  output before "The answer is"; answer ← after it (else the last ``\\boxed{}``); category
  ``mathinstruct/<source>``; program-of-thought rows (source contains "PoT") skipped unless
  ``include_pot=True``.
- ``gsm_hard``: ``reasoning-machines/gsm-hard``, one split ("train", 1,319 rows) served for any split.
  problem ← input; solution ← code (a Python program: the only worked solution it has);
  answer ← target (a float; integral values written as integers); category ``gsm_hard``.

**Offline.** Before any download we check the hub is reachable: with ``HF_HUB_OFFLINE`` or
``HF_DATASETS_OFFLINE`` set we fail at once; otherwise a 3 s TCP connect to the hub (or to the
HTTPS proxy when one is set) must succeed. Failing either, or failing to load, raises one
``HubUnavailableError`` that names the offline sources to use instead, never a long hang.

**Sampling.** Small sets are loaded whole, mapped and subsampled with ``seed`` like every
source. Streamed sets cannot be shuffled whole: we take the first ``n`` mapped rows of
``IterableDataset.shuffle(seed, buffer_size=shuffle_buffer)`` (shard order and a buffer are
shuffled), deterministic for one seed and dataset revision; pin ``revision`` for exact repeats.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from mathkit.data.schema import (check_options, last_boxed, make_record, number_text, split_answer_is,
                                 split_hashes, strip_calculator, strip_think_tags, subsample, to_dataset)
from mathkit.errors import DataError, HubUnavailableError

log = logging.getLogger(__name__)

OFFLINE_SOURCES = ("gsm8k_originals", "gsm_symbolic", "champ", "arithmetic", "sympy_problems")
CONNECT_TIMEOUT_S = 3.0
DEFAULT_SHUFFLE_BUFFER = 1_000


# ---- mapping functions: one hub row -> one unified record (or None to skip it) --------------

def _need(row: dict, *names: str) -> list[Any]:
    missing = [c for c in names if c not in row]
    if missing:
        raise DataError(f"hub row lacks column(s) {missing}; it has {sorted(row)}. The dataset card may "
                        f"have changed: update the mapping in mathkit/data/hub.py")
    return [row[c] for c in names]


def _first(row: dict, *names: str) -> Any:
    for c in names:
        if c in row:
            return row[c]
    raise DataError(f"hub row has none of the columns {list(names)}; it has {sorted(row)}")


def _hash_id(source: str, *parts: Any) -> str:
    digest = hashlib.sha1("\x1f".join(str(p) for p in parts).encode("utf-8")).hexdigest()[:16]
    return f"{source}/{digest}"


def map_gsm8k(row: dict, index: int, split: str, *, keep_calculator: bool = False) -> dict:
    question, answer_text = _need(row, "question", "answer")
    reasoning, answer = split_hashes(answer_text)
    return make_record(id=f"gsm8k/{split}/{index}", source="gsm8k", problem=question,
                       solution=reasoning if keep_calculator else strip_calculator(reasoning),
                       answer=answer, category="gsm8k")


def map_math(row: dict, index: int, split: str, *, subjects: list[str] | None = None,
             levels: list[int] | None = None) -> dict | None:
    problem, solution = _need(row, "problem", "solution")
    subject = row.get("subject") or row.get("type") or "unknown"
    level = row.get("level")
    if subjects and subject not in subjects:
        return None
    if levels and _level_number(level) not in set(levels):
        return None
    answer = row.get("answer") or last_boxed(solution)
    rid = f"math/{row['unique_id']}" if row.get("unique_id") else f"math/{split}/{index}"
    return make_record(id=rid, source="math", problem=problem, solution=solution, answer=answer,
                       category=f"math/{subject}")


def _level_number(level: Any) -> int | None:
    """MATH levels are ints in some mirrors and ``"Level 3"`` in others."""
    if isinstance(level, int):
        return level
    digits = "".join(ch for ch in str(level or "") if ch.isdigit())
    return int(digits) if digits else None


def map_mathx(row: dict, index: int, split: str) -> dict:
    problem = _first(row, "question", "problem")
    solution, answer = _need(row, "generated_solution", "expected_answer")
    return make_record(id=_hash_id("mathx", problem, solution), source="mathx", problem=problem,
                       solution=strip_think_tags(solution), answer=answer, category="mathx")


def map_numinamath(row: dict, index: int, split: str, *, only_correct: bool = True) -> dict | None:
    problem, response, truth = _need(row, "prompt", "response", "ground_truth")
    if only_correct and row.get("correct") is False:
        return None
    answer = last_boxed(truth) or truth
    return make_record(id=_hash_id("numinamath", row.get("problem_id"), problem, response), source="numinamath",
                       problem=problem, solution=strip_think_tags(response), answer=answer,
                       category="numinamath")


def map_metamathqa(row: dict, index: int, split: str) -> dict:
    query, response = _need(row, "query", "response")
    reasoning, answer = split_answer_is(response)
    return make_record(id=_hash_id("metamathqa", query, response), source="metamathqa", problem=query,
                       solution=reasoning, answer=answer, category=f"metamath/{row.get('type') or 'unknown'}")


def map_openmathinstruct2(row: dict, index: int, split: str) -> dict:
    problem, solution, answer = _need(row, "problem", "generated_solution", "expected_answer")
    return make_record(id=_hash_id("openmathinstruct2", problem, solution), source="openmathinstruct2",
                       problem=problem, solution=solution, answer=answer,
                       category=f"openmathinstruct2/{row.get('problem_source') or 'unknown'}")


def map_mathinstruct(row: dict, index: int, split: str, *, include_pot: bool = False) -> dict | None:
    instruction, output = _need(row, "instruction", "output")
    origin = str(row.get("source") or "unknown")
    if not include_pot and "pot" in origin.lower():
        return None
    reasoning, answer = split_answer_is(output)
    if not answer:
        reasoning, answer = output.strip(), last_boxed(output)
    return make_record(id=_hash_id("mathinstruct", instruction, output), source="mathinstruct",
                       problem=instruction, solution=reasoning, answer=answer, category=f"mathinstruct/{origin}")


def map_gsm_hard(row: dict, index: int, split: str) -> dict:
    question, code, target = _need(row, "input", "code", "target")
    answer = number_text(str(int(target)) if isinstance(target, float) and target.is_integer() else str(target))
    return make_record(id=f"gsm_hard/{index}", source="gsm_hard", problem=question, solution=code,
                       answer=answer, category="gsm_hard")


@dataclass(frozen=True)
class HubSource:
    """Where a hub dataset lives and how its rows become unified records."""

    name: str
    repo: str
    config: str | None
    splits: dict[str | None, str]  # our split name (None = default) -> the hub's split
    streaming: bool
    mapper: Callable[..., dict | None]
    options: tuple[str, ...] = field(default=())

    def hub_split(self, split: str | None) -> str:
        if split not in self.splits:
            known = [s for s in self.splits if s is not None]
            raise DataError(f"{self.name} has no split {split!r}; use one of {known} (or None)")
        return self.splits[split]


HUB_SOURCES: dict[str, HubSource] = {s.name: s for s in (
    HubSource("gsm8k", "openai/gsm8k", "main", {None: "test", "train": "train", "test": "test"}, False,
              map_gsm8k, ("keep_calculator",)),
    HubSource("math", "nlile/hendrycks-MATH-benchmark", None, {None: "test", "train": "train", "test": "test"},
              False, map_math, ("subjects", "levels")),
    HubSource("mathx", "XenArcAI/MathX-5M", None, {None: "train", "train": "train"}, True, map_mathx),
    HubSource("numinamath", "PrimeIntellect/NuminaMath-QwQ-CoT-5M", None, {None: "train", "train": "train"},
              True, map_numinamath, ("only_correct",)),
    HubSource("metamathqa", "meta-math/MetaMathQA", None, {None: "train", "train": "train"}, True,
              map_metamathqa),
    HubSource("openmathinstruct2", "nvidia/OpenMathInstruct-2", None,
              {None: "train", "train": "train", "train_1M": "train_1M", "train_2M": "train_2M",
               "train_5M": "train_5M"}, True, map_openmathinstruct2),
    HubSource("mathinstruct", "TIGER-Lab/MathInstruct", None, {None: "train", "train": "train"}, True,
              map_mathinstruct, ("include_pot",)),
    HubSource("gsm_hard", "reasoning-machines/gsm-hard", None, {None: "train", "train": "train", "test": "train"},
              False, map_gsm_hard),
)}


def map_row(name: str, row: dict, index: int = 0, split: str = "train", **options: Any) -> dict | None:
    """Map one hub row of source ``name`` to a unified record (None when the options skip it)."""
    source = _source(name)
    _check_options(source, options)
    return source.mapper(row, index, split, **options)


def _source(name: str) -> HubSource:
    if name not in HUB_SOURCES:
        raise DataError(f"unknown hub source {name!r}; hub sources: {sorted(HUB_SOURCES)}")
    return HUB_SOURCES[name]


def _check_options(source: HubSource, options: dict) -> None:
    check_options(source.name, options, source.options, also="(plus revision, shuffle_buffer)")


# ---- reachability --------------------------------------------------------------------------

def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def _unavailable(name: str, reason: str) -> HubUnavailableError:
    repo = HUB_SOURCES[name].repo if name in HUB_SOURCES else name
    return HubUnavailableError(
        f"{name} ({repo}) comes from the Hugging Face hub, which is not available: {reason}. "
        f"Offline sources that need no network: {', '.join(OFFLINE_SOURCES)}, or your own file "
        f"(load_math_dataset('path/to/problems.jsonl')).")


def hub_address() -> tuple[str, int]:
    """``(host, port)`` a hub download would connect to first: the HTTPS proxy if set, else the hub."""
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    url = urlparse(proxy if proxy else os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    return url.hostname or "huggingface.co", url.port or (443 if url.scheme in ("https", "") else 80)


def check_hub_reachable(name: str = "hub", timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Raise HubUnavailableError at once when offline mode is set, or within ``timeout`` s without network."""
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        if _truthy(os.environ.get(var)):
            raise _unavailable(name, f"{var}={os.environ[var]} is set")
    host, port = hub_address()
    outcome: list[BaseException | None] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome.append(None)
        except OSError as err:
            outcome.append(err)

    # The DNS lookup ignores the socket timeout, so the whole attempt runs in a thread we stop waiting for.
    worker = threading.Thread(target=connect, daemon=True)
    worker.start()
    worker.join(timeout)
    if not outcome or outcome[0] is not None:
        reason = outcome[0] if outcome else "timed out"
        raise _unavailable(name, f"no connection to {host}:{port} within {timeout:g} s ({reason})")


# ---- loading -------------------------------------------------------------------------------

def load_hub(name: str, split: str | None = None, n: int | None = None, seed: int = 0, *,
             revision: str | None = None, shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER, **options: Any):
    """A unified ``datasets.Dataset`` from hub source ``name`` (see the module table)."""
    source = _source(name)
    _check_options(source, options)
    hub_split = source.hub_split(split)
    if source.streaming and n is None:
        raise DataError(f"{name} is a large streamed dataset: give n (how many rows to take)")
    check_hub_reachable(name)
    from datasets import load_dataset

    log.info("loading %s from %s (%s split%s)", name, source.repo, hub_split, ", streamed" if source.streaming else "")
    try:
        if source.streaming:
            stream = load_dataset(source.repo, source.config, split=hub_split, streaming=True, revision=revision)
            if shuffle_buffer:
                stream = stream.shuffle(seed=seed, buffer_size=shuffle_buffer)
            return to_dataset(_take(stream, source, hub_split, n, options))
        data = load_dataset(source.repo, source.config, split=hub_split, revision=revision)
        rows = (source.mapper(row, i, hub_split, **options) for i, row in enumerate(data))
        return subsample(to_dataset(r for r in rows if r is not None), n, seed)
    except (DataError, HubUnavailableError):
        raise
    except Exception as err:  # noqa: BLE001 - the hub fails in many library-specific ways; say it once
        raise _unavailable(name, f"loading failed with {type(err).__name__}: {err}") from err


def _take(stream, source: HubSource, hub_split: str, n: int, options: dict) -> list[dict]:
    from tqdm.auto import tqdm

    rows: list[dict] = []
    with tqdm(total=n, desc=f"streaming {source.name}") as bar:
        for i, row in enumerate(stream):
            record = source.mapper(row, i, hub_split, **options)
            if record is not None:
                rows.append(record)
                bar.update(1)
            if len(rows) >= n:
                break
    if len(rows) < n:
        log.warning("%s: the stream ended after %d usable rows of %d asked", source.name, len(rows), n)
    return rows
