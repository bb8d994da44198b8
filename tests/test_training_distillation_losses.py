"""Distillation loss terms on hand-made tensors: KL directions, temperature, masks, teacher
mixtures, hidden-state matching across widths, InfoNCE, and the weighted total."""

import math

import pytest
import torch
import torch.nn.functional as F

from mathkit.training.distillation_losses import (
    HiddenStateMatcher,
    combine_losses,
    completion_positions,
    forward_kl,
    hidden_mse,
    info_nce,
    kd_loss,
    masked_cross_entropy,
    mean_pool,
    reverse_kl,
    teacher_log_probs,
)


def logits_of(*probs):
    """Logits whose softmax is ``probs`` (one row per distribution)."""
    return torch.tensor(probs, dtype=torch.float32).log()


def kl(p, q):
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q) if pi > 0)


def test_kl_of_identical_distributions_is_zero_both_ways():
    torch.manual_seed(0)
    z = torch.randn(2, 5, 11)
    for direction in ("forward", "reverse"):
        for temperature in (0.5, 1.0, 3.0):
            assert kd_loss(z, z.clone(), direction=direction, temperature=temperature).item() == pytest.approx(0, abs=1e-6)
    assert forward_kl(z, torch.randn(2, 5, 11)).item() > 0


def test_forward_is_mass_covering_and_reverse_is_mode_seeking():
    # A bimodal teacher (tokens 0 and 2, a valley at 1); one student sits on one mode, the other
    # spreads its mass over the valley between them.
    teacher = [0.495, 0.01, 0.495]
    one_mode = [0.98, 0.01, 0.01]
    spread = [0.2, 0.6, 0.2]
    t = logits_of(teacher)
    fwd_one, fwd_spread = forward_kl(logits_of(one_mode), t).item(), forward_kl(logits_of(spread), t).item()
    rev_one, rev_spread = reverse_kl(logits_of(one_mode), t).item(), reverse_kl(logits_of(spread), t).item()
    # Values by hand: forward is KL(teacher || student), reverse KL(student || teacher).
    assert fwd_one == pytest.approx(kl(teacher, one_mode), rel=1e-4)
    assert rev_one == pytest.approx(kl(one_mode, teacher), rel=1e-4)
    assert fwd_spread == pytest.approx(kl(teacher, spread), rel=1e-4)
    assert rev_spread == pytest.approx(kl(spread, teacher), rel=1e-4)
    # Forward KL punishes the missed mode hardest; reverse KL punishes mass where the teacher has none.
    assert fwd_one > fwd_spread
    assert rev_one < rev_spread


def test_temperature_softens_both_and_scales_by_t_squared():
    torch.manual_seed(1)
    s, t = torch.randn(4, 7), torch.randn(4, 7)
    for temperature in (1.0, 2.0, 4.0):
        q, p = F.log_softmax(s / temperature, -1), F.log_softmax(t / temperature, -1)
        by_hand = F.kl_div(q, p, log_target=True, reduction="batchmean")  # KL(p || q), mean over rows
        assert forward_kl(s, t, temperature=temperature).item() == pytest.approx(temperature**2 * by_hand.item(), rel=1e-5)
        by_hand_rev = F.kl_div(p, q, log_target=True, reduction="batchmean")
        assert reverse_kl(s, t, temperature=temperature).item() == pytest.approx(temperature**2 * by_hand_rev.item(), rel=1e-5)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        forward_kl(s, t, temperature=0)


def test_completion_mask_follows_the_causal_shift_and_excludes_the_prompt():
    labels = torch.tensor([[-100, -100, -100, 7, 8, -100],    # prompt of 3, completion of 2, padding
                           [-100, -100, 5, 6, 9, 4]])
    mask = completion_positions(labels)
    assert mask.tolist() == [[False, False, True, True, False, False],
                             [False, True, True, True, True, False]]
    torch.manual_seed(2)
    s, t = torch.randn(2, 6, 9), torch.randn(2, 6, 9)
    loss = forward_kl(s, t, mask)
    # Changing the logits at unselected positions (prompt, padding, last) changes nothing...
    s2, t2 = s.clone(), t.clone()
    s2[~mask], t2[~mask] = torch.randn(int((~mask).sum()), 9) * 5, torch.randn(int((~mask).sum()), 9) * 5
    assert forward_kl(s2, t2, mask).item() == pytest.approx(loss.item(), rel=1e-6)
    # ...and the loss is the mean over the selected positions alone.
    rows = [forward_kl(s[b, i], t[b, i]).item() for b, i in mask.nonzero().tolist()]
    assert loss.item() == pytest.approx(sum(rows) / len(rows), rel=1e-5)
    # An empty selection is a finite zero.
    assert forward_kl(s, t, torch.zeros_like(mask)).item() == 0.0


def test_cross_entropy_on_labels_matches_the_models_shifted_loss():
    torch.manual_seed(3)
    logits = torch.randn(2, 6, 9)
    labels = torch.tensor([[-100, -100, -100, 7, 8, -100], [-100, -100, 5, 6, 1, 4]])
    shifted = F.cross_entropy(logits[:, :-1].reshape(-1, 9), labels[:, 1:].reshape(-1), ignore_index=-100)
    assert masked_cross_entropy(logits, labels).item() == pytest.approx(shifted.item(), rel=1e-6)


def test_teachers_are_mixed_by_weight_before_the_kl():
    p1, p2 = [0.7, 0.2, 0.1], [0.1, 0.3, 0.6]
    student = [0.3, 0.3, 0.4]
    z1, z2, s = logits_of(p1), logits_of(p2), logits_of(student)
    mixture = [0.75 * a + 0.25 * b for a, b in zip(p1, p2)]
    assert teacher_log_probs([z1, z2], weights=[0.75, 0.25]).exp()[0].tolist() == pytest.approx(mixture, rel=1e-5)
    assert forward_kl(s, [z1, z2], weights=[3, 1]).item() == pytest.approx(kl(mixture, student), rel=1e-5)
    assert reverse_kl(s, [z1, z2], weights=[3, 1]).item() == pytest.approx(kl(student, mixture), rel=1e-5)
    equal = [(a + b) / 2 for a, b in zip(p1, p2)]
    assert forward_kl(s, [z1, z2]).item() == pytest.approx(kl(equal, student), rel=1e-5)
    # A weight of 0 leaves a teacher out; one tensor is one teacher.
    assert forward_kl(s, [z1, z2], weights=[1, 0]).item() == pytest.approx(forward_kl(s, z1).item(), rel=1e-6)
    with pytest.raises(ValueError, match="2 teacher weights for 3 teachers"):
        forward_kl(s, [z1, z2, z1], weights=[1, 1])
    with pytest.raises(ValueError, match="not all 0"):
        forward_kl(s, [z1, z2], weights=[0, 0])


def test_hidden_matching_across_widths_trains_the_projection():
    torch.manual_seed(4)
    student_states = [torch.randn(2, 5, 8, requires_grad=True) for _ in range(3)]    # width 8, 2 layers
    teacher_states = [torch.randn(2, 5, 12) for _ in range(5)]                      # width 12, 4 layers
    mask = torch.tensor([[0, 1, 1, 1, 0], [0, 0, 1, 1, 0]], dtype=torch.bool)
    matcher = HiddenStateMatcher(8, [12], [(1, 2), (2, 4)])
    loss = matcher.hidden_loss(student_states, [teacher_states], mask)
    assert loss.item() > 0
    loss.backward()
    projections = list(matcher.hidden[0])
    assert all(isinstance(p, torch.nn.Linear) and p.weight.grad is not None and p.weight.grad.abs().sum() > 0
               for p in projections)
    assert student_states[1].grad.abs().sum() > 0 and student_states[0].grad is None  # layer 0 is not paired
    # Same width: identity, and the term is plain MSE at the masked positions.
    same = HiddenStateMatcher(12, [12], [(0, 0)])
    assert not list(same.parameters())
    expected = F.mse_loss(teacher_states[1][mask], teacher_states[0][mask]).item()
    assert same.hidden_loss([teacher_states[1]], [teacher_states], mask).item() == pytest.approx(expected, rel=1e-6)
    assert hidden_mse(teacher_states[0], teacher_states[0], mask).item() == 0.0
    with pytest.raises(ValueError, match="widths differ"):
        hidden_mse(student_states[0], teacher_states[0])


def test_info_nce_rewards_matching_sequences_and_pools_over_the_mask():
    torch.manual_seed(5)
    teacher = torch.randn(6, 16)
    aligned = teacher + 0.05 * torch.randn(6, 16)
    shuffled = aligned[torch.tensor([1, 2, 3, 4, 5, 0])]
    assert info_nce(aligned, teacher).item() < 0.1 < info_nce(shuffled, teacher).item()
    logits = F.normalize(aligned, dim=-1) @ F.normalize(teacher, dim=-1).T / 0.5
    assert info_nce(aligned, teacher, 0.5).item() == pytest.approx(F.cross_entropy(logits, torch.arange(6)).item(), rel=1e-5)
    assert info_nce(aligned[:1], teacher[:1]).item() == pytest.approx(0.0, abs=1e-6)  # no negatives
    hidden = torch.tensor([[[1.0], [3.0], [100.0]]])
    assert mean_pool(hidden, torch.tensor([[True, True, False]])).tolist() == [[2.0]]
    # The matcher's contrastive term projects the student to the teacher's width and has gradients.
    matcher = HiddenStateMatcher(8, [12, 16], contrastive=True)
    loss = matcher.contrastive_loss(torch.randn(4, 5, 8), [torch.randn(4, 5, 12), torch.randn(4, 5, 16)],
                                    torch.ones(4, 5, dtype=torch.bool), weights=[1, 1])
    loss.backward()
    assert all(p.weight.grad is not None for p in matcher.pooled)


def test_combine_weighs_terms_and_reports_each_unweighted():
    terms = {"ce": torch.tensor(2.0), "kd": torch.tensor(0.5), "hidden": None, "contrastive": torch.tensor(1.0)}
    total, parts = combine_losses(terms, {"ce": 0.5, "kd": 2.0, "hidden": 1.0, "contrastive": 0.0})
    assert total.item() == pytest.approx(0.5 * 2.0 + 2.0 * 0.5)
    assert parts == {"ce_loss": 2.0, "kd_loss": 0.5, "contrastive_loss": 1.0}
    with pytest.raises(ValueError, match="no loss term has a non-zero weight"):
        combine_losses({"ce": torch.tensor(1.0)}, {"ce": 0.0})
