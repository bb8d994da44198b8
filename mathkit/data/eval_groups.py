"""Evaluation groups drawn apart from a training pool: the one way notebooks 02, 03 and 05 draw them.

Each group is its own list of source specs (:func:`mathkit.data.combine_sources`), drawn with the
evaluation seed, not the training seed: GSM-Symbolic seeds each template's variants by (seed,
template), so with the training seed an in-template group would draw the very variants training
saw. A drawn problem equal to a training problem is dropped (counted in ``redrawn``), and
:func:`mathkit.data.splits.group_leaks` checks every group against the pool and the groups against
each other.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from mathkit.data.combine import combine_sources
from mathkit.data.splits import drop_seen, group_leaks, leak_count


@dataclass
class EvalGroups:
    groups: dict          # name -> datasets.Dataset of problems
    provenance: dict      # name -> combine_sources' provenance of the draw
    redrawn: dict         # name -> problems dropped because training holds them
    leaks: dict           # group_leaks' report

    @property
    def n_leaks(self) -> int:
        return leak_count(self.leaks)

    def lines(self) -> list[str]:
        """One line per group (size, sources, dropped, templates training never saw), then the leak count."""
        out = [f"{name}: {len(rows)} problems, {dict(sorted(Counter(rows['source']).items()))}; "
               f"{self.redrawn[name]} equal to a training problem (dropped); "
               f"templates training never saw: {len(self.leaks['unseen_templates'][name])}"
               for name, rows in self.groups.items()]
        return out + [f"leaks between training and the groups, or between groups: {self.n_leaks}"]


def draw_eval_groups(specs: Mapping[str, list], seen, *, seed: int) -> EvalGroups:
    """Draw each group of ``specs`` (name -> source specs) with ``seed``, without the problems of
    ``seen`` (the training pool, a ``datasets.Dataset`` with a ``problem`` column)."""
    groups, provenance, redrawn = {}, {}, {}
    for name, group_specs in specs.items():
        drawn, provenance[name] = combine_sources(group_specs, seed=seed)
        groups[name], redrawn[name] = drop_seen(drawn, seen)
    return EvalGroups(groups=groups, provenance=provenance, redrawn=redrawn, leaks=group_leaks(seen, groups))
