"""Mix several sources into one training set, with fallbacks that are loud and recorded.

``combine_sources([{"name": "gsm8k", "n": 3000, "split": "train", "fallback": ["gsm_symbolic"]},
{"name": "numinamath", "n": 5000, "fallback": ["sympy_problems"]}, {"name": "gsm_hard", "n": 1000}],
seed=0)`` loads each source (capped at ``n`` rows), concatenates them and shuffles with ``seed``.

A source the hub cannot serve (``HubUnavailableError``) is replaced by its first fallback that
loads; the swap is logged with ``logging.warning`` and written into the provenance dict, which the
notebooks put into results.json, so a report never silently trains on other data than it says.
Other errors (a wrong option, a missing split) are bugs in the spec and are raised as they are.

A fallback is a source name (it inherits ``n`` and ``split``, not ``options``, which are
source-specific) or a full spec dict/``SourceSpec`` (``n``/``split`` inherited when not given).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from mathkit.errors import DataError, HubUnavailableError

log = logging.getLogger(__name__)


@dataclass
class SourceSpec:
    """One source of a mixture: name, row cap ``n``, split, loader options and fallbacks."""

    name: str
    n: int | None = None
    split: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    fallback: list[Any] = field(default_factory=list)

    @classmethod
    def coerce(cls, spec: Any, parent: SourceSpec | None = None) -> SourceSpec:
        """A SourceSpec from a SourceSpec, a dict or a bare name (n/split from ``parent`` if unset)."""
        if isinstance(spec, cls):
            out = spec
        elif isinstance(spec, str):
            out = cls(name=spec)
        elif isinstance(spec, Mapping):
            known = {f.name for f in fields(cls)}
            unknown = sorted(set(spec) - known)
            if unknown:
                raise DataError(f"source spec has unknown key(s) {unknown}; keys are {sorted(known)}")
            if "name" not in spec:
                raise DataError(f"source spec {dict(spec)} has no 'name'")
            out = cls(**spec)
        else:
            raise DataError(f"a source spec is a name, a dict or a SourceSpec, not {type(spec).__name__}")
        if parent is not None:
            out = cls(out.name, out.n if out.n is not None else parent.n,
                      out.split if out.split is not None else parent.split, dict(out.options), list(out.fallback))
        return out


def _load_one(spec: SourceSpec, seed: int):
    from mathkit.data import load_math_dataset

    return load_math_dataset(spec.name, split=spec.split, n=spec.n, seed=seed, **spec.options)


def combine_sources(specs: Iterable[Any], seed: int = 0) -> tuple[Any, dict[str, Any]]:
    """``(dataset, provenance)``: the sources concatenated and shuffled with ``seed``.

    ``provenance`` = ``{"seed", "n_total", "fallbacks": ["gsm8k -> gsm8k_originals", ...],
    "sources": [{"requested", "used", "split", "n_requested", "n_loaded", "options", "fallback_used",
    "errors": [{"source", "error"}], "categories": {...}}]}``.
    """
    from datasets import concatenate_datasets

    parts, entries, fallbacks = [], [], []
    for raw in specs:
        spec = SourceSpec.coerce(raw)
        candidates = [spec] + [SourceSpec.coerce(f, parent=spec) for f in spec.fallback]
        errors: list[dict[str, str]] = []
        loaded = used = None
        for candidate in candidates:
            try:
                loaded, used = _load_one(candidate, seed), candidate
                break
            except HubUnavailableError as err:
                errors.append({"source": candidate.name, "error": str(err)})
                log.warning("source %r unavailable: %s", candidate.name, err)
        if loaded is None:
            tried = ", ".join(c.name for c in candidates)
            raise HubUnavailableError(f"no source could be loaded for {spec.name!r} (tried {tried}); "
                                      f"add an offline fallback such as 'gsm8k_originals'. Last error: "
                                      f"{errors[-1]['error']}")
        if used is not spec:
            note = f"{spec.name} -> {used.name}"
            fallbacks.append(note)
            log.warning("FALLBACK %s: %r could not be loaded, training uses %r instead (recorded in provenance)",
                        note, spec.name, used.name)
        if used.n is not None and len(loaded) < used.n:
            log.warning("%s gave %d rows, fewer than the %d asked", used.name, len(loaded), used.n)
        parts.append(loaded)
        entries.append({
            "requested": spec.name, "used": used.name, "split": used.split, "n_requested": used.n,
            "n_loaded": len(loaded), "options": _plain(used.options), "fallback_used": used is not spec,
            "errors": errors, "categories": dict(Counter(loaded["category"])),
        })
    if not parts:
        raise DataError("combine_sources got no source specs")
    combined = concatenate_datasets(parts).shuffle(seed=seed).flatten_indices()
    provenance = {"seed": seed, "n_total": len(combined), "fallbacks": fallbacks, "sources": entries}
    return combined, provenance


def _plain(value: Any) -> Any:
    """Options as JSON-friendly values for results.json (tuples become lists)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_plain(v) for v in value]
    return value


def spec_dicts(specs: Iterable[Any]) -> list[dict[str, Any]]:
    """Specs as plain dicts, e.g. to store the requested mixture next to the provenance."""
    return [_plain(asdict(SourceSpec.coerce(s))) for s in specs]
