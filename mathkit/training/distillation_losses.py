"""The loss terms of knowledge distillation, as functions of tensors (no trainer, no models).

* :func:`forward_kl` (Hinton et al. 2015, "Distilling the Knowledge in a Neural Network"):
  KL(teacher || student). Mass-covering: the student pays wherever the teacher has mass it misses.
* :func:`reverse_kl` (Gu et al. 2024, MiniLLM, arXiv:2306.08543): KL(student || teacher).
  Mode-seeking: the student pays where it puts mass the teacher does not, so it may settle on
  one of the teacher's modes.
* :func:`teacher_log_probs`: several teachers as one distribution, the (weighted) mean of their
  probabilities, so either KL compares the student with the mixture.
* :class:`HiddenStateMatcher`: MSE between chosen student and teacher hidden states (TinyBERT,
  Jiao et al. 2020), through a learned linear projection where the widths differ; and an InfoNCE
  term between mean-pooled sequence representations (CRD, Tian et al. 2020, in-batch form).
* :func:`combine_losses`: the weighted total and the parts for logging.

Token positions: the logits and hidden states at position ``t`` predict token ``t + 1``, so the
terms are taken at the positions whose *next* label is a completion token
(:func:`completion_positions`), the positions the cross-entropy on the labels trains. They are
gathered before any softmax, so a large vocabulary costs memory for completion tokens only.

torch has ``F.kl_div``, but it takes a fixed target and neither mixes teachers nor gives the
reverse direction with the student's gradient, hence the few lines below.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

IGNORE_INDEX = -100
KD_DIRECTIONS = ("forward", "reverse")


def completion_positions(labels: torch.Tensor) -> torch.Tensor:
    """Boolean (batch, length): True at position ``t`` when label ``t + 1`` is trained (not -100),
    i.e. where the model's output predicts a completion token. The last position is False."""
    mask = torch.zeros_like(labels, dtype=torch.bool)
    mask[:, :-1] = labels[:, 1:] != IGNORE_INDEX
    return mask


def next_token_targets(labels: torch.Tensor) -> torch.Tensor:
    """The label each position predicts (``labels`` shifted left by one; -100 at the end)."""
    targets = torch.full_like(labels, IGNORE_INDEX)
    targets[:, :-1] = labels[:, 1:]
    return targets


def _as_list(tensors: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
    return [tensors] if isinstance(tensors, torch.Tensor) else list(tensors)


def normalized_weights(weights: Sequence[float] | None, n: int) -> list[float]:
    """``weights`` scaled to sum to 1 (equal weights when None); ValueError when they cannot be."""
    if weights is None:
        return [1.0 / n] * n
    weights = [float(w) for w in weights]
    if len(weights) != n:
        raise ValueError(f"{len(weights)} teacher weights for {n} teachers; give one weight per teacher")
    if any(w < 0 or not math.isfinite(w) for w in weights) or sum(weights) <= 0:
        raise ValueError(f"teacher weights must be finite, >= 0 and not all 0, got {weights}")
    total = sum(weights)
    return [w / total for w in weights]


def teacher_log_probs(teacher_logits: torch.Tensor | Sequence[torch.Tensor], temperature: float = 1.0,
                      weights: Sequence[float] | None = None) -> torch.Tensor:
    """Log-probabilities of the teachers' mixture at ``temperature``: ``log sum_i w_i softmax(z_i / T)``.

    One tensor is one teacher (its log-softmax). ``weights`` (one per teacher, normalized here)
    default to equal weights; a weight of 0 leaves that teacher out.
    """
    logits = _as_list(teacher_logits)
    weights = normalized_weights(weights, len(logits))
    if len(logits) == 1:
        return F.log_softmax(logits[0].float() / temperature, dim=-1)
    parts = [F.log_softmax(z.float() / temperature, dim=-1) + math.log(w)
             for z, w in zip(logits, weights) if w > 0]
    return torch.logsumexp(torch.stack(parts), dim=0)


def _kl(student_logits: torch.Tensor, teacher_logits, mask: torch.Tensor | None, *, temperature: float,
        weights: Sequence[float] | None, direction: str) -> torch.Tensor:
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    teachers = _as_list(teacher_logits)
    if mask is not None:  # gather the selected positions first: (N, vocab)
        student_logits = student_logits[mask]
        teachers = [t[mask] for t in teachers]
    vocab = student_logits.shape[-1]
    student = F.log_softmax(student_logits.float().reshape(-1, vocab) / temperature, dim=-1)
    teacher = teacher_log_probs([t.reshape(-1, vocab) for t in teachers], temperature, weights)
    if direction == "forward":
        per_position = (teacher.exp() * (teacher - student)).sum(-1)
    elif direction == "reverse":
        per_position = (student.exp() * (student - teacher)).sum(-1)
    else:
        raise ValueError(f"unknown KL direction {direction!r}; use one of {KD_DIRECTIONS}")
    # Mean over positions; an empty selection gives a finite 0, not 0/0.
    mean = per_position.sum() / max(per_position.numel(), 1)
    # Scaled by T^2 so that the gradients keep their size when the temperature changes (Hinton et al.).
    return mean * temperature**2


def forward_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor | Sequence[torch.Tensor],
               mask: torch.Tensor | None = None, *, temperature: float = 1.0,
               weights: Sequence[float] | None = None) -> torch.Tensor:
    """``T^2 * KL(teacher || student)`` at temperature ``T``, averaged over the positions ``mask``
    selects (all when None). ``teacher_logits``: one tensor, or several teachers mixed by
    :func:`teacher_log_probs` with ``weights``. Logits are (..., vocab); ``mask`` is their leading shape.
    """
    return _kl(student_logits, teacher_logits, mask, temperature=temperature, weights=weights,
               direction="forward")


def reverse_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor | Sequence[torch.Tensor],
               mask: torch.Tensor | None = None, *, temperature: float = 1.0,
               weights: Sequence[float] | None = None) -> torch.Tensor:
    """``T^2 * KL(student || teacher)`` (MiniLLM); arguments as in :func:`forward_kl`."""
    return _kl(student_logits, teacher_logits, mask, temperature=temperature, weights=weights,
               direction="reverse")


def kd_loss(student_logits: torch.Tensor, teacher_logits, mask: torch.Tensor | None = None, *,
            direction: str = "forward", temperature: float = 1.0,
            weights: Sequence[float] | None = None) -> torch.Tensor:
    """:func:`forward_kl` or :func:`reverse_kl` by name (``direction``)."""
    return _kl(student_logits, teacher_logits, mask, temperature=temperature, weights=weights,
               direction=direction)


def masked_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over the trained labels (the causal shift inside), as the
    model's own loss computes it."""
    targets = next_token_targets(labels)
    mask = targets != IGNORE_INDEX
    if not bool(mask.any()):
        return logits.sum() * 0.0  # finite, and still connected to the graph
    return F.cross_entropy(logits[mask].float(), targets[mask])


def hidden_mse(student_hidden: torch.Tensor, teacher_hidden: torch.Tensor,
               mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error between two (batch, length, width) states of one width, over the
    positions ``mask`` selects (mean over positions and features)."""
    if student_hidden.shape[-1] != teacher_hidden.shape[-1]:
        raise ValueError(f"hidden widths differ ({student_hidden.shape[-1]} vs {teacher_hidden.shape[-1]}): "
                         "project the student's states first (HiddenStateMatcher does)")
    if mask is not None:
        student_hidden, teacher_hidden = student_hidden[mask], teacher_hidden[mask]
    if student_hidden.numel() == 0:
        return student_hidden.sum() * 0.0
    return F.mse_loss(student_hidden.float(), teacher_hidden.float())


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """(batch, width): the mean of each sequence's states over the positions ``mask`` selects
    (all when None); a row with nothing selected pools to zeros."""
    if mask is None:
        return hidden.float().mean(dim=1)
    weights = mask.to(torch.float32).unsqueeze(-1)
    return (hidden.float() * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)


def info_nce(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """InfoNCE (van den Oord et al. 2018) between (batch, width) representations: each student row
    must pick out its own sequence's teacher row among the batch's rows, by cosine similarity
    divided by ``temperature``. Symmetric widths only; a batch of one gives 0 (no negatives)."""
    if temperature <= 0:
        raise ValueError(f"contrastive temperature must be > 0, got {temperature}")
    student, teacher = F.normalize(student.float(), dim=-1), F.normalize(teacher.float(), dim=-1)
    logits = student @ teacher.T / temperature
    return F.cross_entropy(logits, torch.arange(len(logits), device=logits.device))


class HiddenStateMatcher(nn.Module):
    """The learned parts of the representation terms, and the terms themselves.

    For each teacher ``k`` and each pair ``(i, j)`` of ``layer_pairs``, student hidden state ``i``
    is mapped to teacher ``k``'s width by a linear layer (identity where the widths agree) and
    compared with teacher hidden state ``j`` by :func:`hidden_mse`. Indices follow transformers'
    ``output_hidden_states``: 0 is the embedding output, ``n`` the last layer's. With
    ``contrastive``, one more projection per teacher (of differing width) maps the student's
    mean-pooled last state for :func:`info_nce`. Several teachers: their terms are averaged
    with the teacher weights.

    The projections are trained with the student but belong to the distillation, not to the
    student: they are not part of the student model and are not saved with it.
    """

    def __init__(self, student_width: int, teacher_widths: Sequence[int],
                 layer_pairs: Sequence[tuple[int, int]] = (), *, contrastive: bool = False):
        super().__init__()
        self.layer_pairs = [(int(i), int(j)) for i, j in layer_pairs]
        self.hidden = nn.ModuleList(
            nn.ModuleList(self._projection(student_width, width) for _ in self.layer_pairs)
            for width in teacher_widths)
        self.pooled = nn.ModuleList(
            self._projection(student_width, width) for width in teacher_widths) if contrastive else None

    @staticmethod
    def _projection(student_width: int, teacher_width: int) -> nn.Module:
        return nn.Identity() if student_width == teacher_width else nn.Linear(student_width, teacher_width)

    def hidden_loss(self, student_states: Sequence[torch.Tensor],
                    teacher_states: Sequence[Sequence[torch.Tensor]], mask: torch.Tensor | None = None,
                    weights: Sequence[float] | None = None) -> torch.Tensor:
        """Weighted over teachers, mean over pairs of :func:`hidden_mse` at the ``mask`` positions.
        ``student_states``: the student's ``hidden_states``; ``teacher_states``: one such per teacher."""
        if not self.layer_pairs:
            raise ValueError("no layer pairs to match: give layer_pairs to HiddenStateMatcher")
        weights = normalized_weights(weights, len(self.hidden))
        total = 0.0
        for projections, states, weight in zip(self.hidden, teacher_states, weights, strict=True):
            per_pair = [hidden_mse(proj(student_states[i]), states[j], mask)
                        for proj, (i, j) in zip(projections, self.layer_pairs)]
            total = total + weight * torch.stack(per_pair).mean()
        return total

    def contrastive_loss(self, student_last: torch.Tensor, teacher_last: Sequence[torch.Tensor],
                         pool_mask: torch.Tensor | None = None, weights: Sequence[float] | None = None,
                         temperature: float = 0.1) -> torch.Tensor:
        """Weighted over teachers, :func:`info_nce` between the mean-pooled (over ``pool_mask``)
        last student state, projected, and each teacher's mean-pooled last state."""
        if self.pooled is None:
            raise ValueError("this matcher was built without contrastive=True")
        weights = normalized_weights(weights, len(self.pooled))
        student = mean_pool(student_last, pool_mask)
        total = 0.0
        for projection, states, weight in zip(self.pooled, teacher_last, weights, strict=True):
            total = total + weight * info_nce(projection(student), mean_pool(states, pool_mask), temperature)
        return total


def combine_losses(terms: Mapping[str, torch.Tensor | None],
                   weights: Mapping[str, float]) -> tuple[torch.Tensor, dict[str, float]]:
    """``(sum of weights[name] * terms[name], {f"{name}_loss": value})``.

    Terms that are None or weighted 0 are left out of the total; every computed term is reported,
    unweighted, so that a log shows each part on its own scale.
    """
    total, parts = None, {}
    for name, term in terms.items():
        if term is None:
            continue
        parts[f"{name}_loss"] = float(term.detach())
        weight = float(weights.get(name, 0.0))
        if weight:
            total = weight * term if total is None else total + weight * term
    if total is None:
        raise ValueError(f"no loss term has a non-zero weight (terms {sorted(terms)}, weights {dict(weights)})")
    return total, parts
