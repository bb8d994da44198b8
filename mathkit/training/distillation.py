"""Knowledge distillation as a trainer for :func:`mathkit.training.train`.

``train(student, tokenizer, data, ..., trainer_class=distillation_trainer(teachers, config))``
trains the student on the prompt/completion data with a loss made of (weights in
:class:`DistillationConfig`):

* ``ce``: cross-entropy on the completion labels, as plain supervised fine-tuning;
* ``kd``: forward KL (Hinton) or reverse KL (MiniLLM) between the teachers' and the student's
  next-token distributions at a temperature, scaled by T^2;
* ``hidden``: MSE between chosen student and teacher hidden states, through learned projections
  where the widths differ;
* ``contrastive``: InfoNCE between mean-pooled student and teacher sequence representations.

The terms are taken on completion tokens only (:mod:`mathkit.training.distillation_losses`). The
teachers run in eval mode under ``torch.no_grad()`` on the same batch; several teachers'
distributions are mixed with ``teacher_weights``. Each term is logged (unweighted) next to the
total ``loss``, as ``ce_loss``, ``kd_loss``, ... (``eval_`` ones on the validation set), so it
reaches ``metrics.jsonl``. ``eval_loss`` is the total distillation loss; ``eval_ce_loss`` is
the number to compare with a plain fine-tuning run.

``method: on_policy`` uses TRL's :class:`trl.DistillationTrainer` instead (Agarwal et al. 2024,
GKD): the student generates completions for the prompts and learns the teacher's distribution on
its own samples; the dataset's completions are not used. One teacher, the KD term alone.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from transformers import TrainerCallback
from trl import SFTTrainer

from mathkit.errors import ParamsError
from mathkit.models.io import unwrap
from mathkit.training import distillation_losses as losses

log = logging.getLogger(__name__)

METHODS = ("off_policy", "on_policy")
KD_CHOICES = ("forward", "reverse", "none")
PROJECTIONS_FILE = "distillation_projections.safetensors"
# TRL's generalized JSD: beta 0 is forward KL, 1 reverse KL.
ON_POLICY_BETA = {"forward": 0.0, "reverse": 1.0}


class DistillationSettingError(ParamsError, ValueError):
    """A key of a ``distillation:`` block is unknown or has a bad value (a ValueError too, so that a
    pydantic schema reports it as a validation error of its field)."""

    def __init__(self, key: str, message: str):
        self.key, self.reason = key, message
        super().__init__(f"key 'distillation.{key}': {message}" if key else f"distillation: {message}")


def _number(key: str, value: Any) -> float:
    if isinstance(value, str):  # YAML reads 1e-4 (no dot) as text
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DistillationSettingError(key, f"expected a finite number, got {value!r}")
    return float(value)


def _layer_pairs(value: Any) -> tuple[tuple[int, int], ...]:
    items = value.items() if isinstance(value, Mapping) else value
    try:
        pairs = tuple((i, j) for i, j in items)
    except (TypeError, ValueError):
        raise DistillationSettingError("layer_pairs", "expected [[student_layer, teacher_layer], ...] or a "
                                       f"mapping {{student_layer: teacher_layer}}, got {value!r}") from None
    for pair in pairs:
        if not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in pair):
            raise DistillationSettingError("layer_pairs", f"{list(pair)}: layers are hidden-state indices, "
                                           "integers >= 0 (0 = embeddings, n = layer n's output)")
    if len(set(pairs)) != len(pairs):
        raise DistillationSettingError("layer_pairs", f"{[list(p) for p in pairs]} repeats a pair")
    return pairs


@dataclasses.dataclass
class DistillationConfig:
    """What the distillation loss is made of; build it from a parameter block with :meth:`from_dict`.

    ``method``: ``off_policy`` (the dataset's completions, teacher-forced) or ``on_policy`` (TRL's
    DistillationTrainer: the student's own samples). ``kd``: ``forward`` KL(teacher||student),
    ``reverse`` KL(student||teacher) or ``none``. ``temperature`` softens both distributions
    (the KD term is scaled by its square). ``*_weight``: each term's weight in the total;
    ``ce_weight`` None means 1 off-policy, 0 on-policy. ``layer_pairs``: (student, teacher)
    hidden-state indices for ``hidden``. ``teacher_weights``: one per teacher (normalized), for
    every term; None weighs the teachers equally. ``contrastive_temperature``: InfoNCE's.
    ``max_completion_length``: tokens the student samples per prompt, on-policy only.
    """

    method: str = "off_policy"
    kd: str = "forward"
    temperature: float = 2.0
    ce_weight: float | None = None
    kd_weight: float = 1.0
    hidden_weight: float = 0.0
    contrastive_weight: float = 0.0
    layer_pairs: tuple[tuple[int, int], ...] = ()
    teacher_weights: tuple[float, ...] | None = None
    contrastive_temperature: float = 0.1
    max_completion_length: int = 128

    def __post_init__(self):
        if self.method not in METHODS:
            raise DistillationSettingError("method", f"unknown method {self.method!r}; use one of {', '.join(METHODS)}")
        if self.kd not in KD_CHOICES:
            raise DistillationSettingError("kd", f"unknown KL direction {self.kd!r}; use one of {', '.join(KD_CHOICES)}")
        if self.ce_weight is None:
            self.ce_weight = 1.0 if self.method == "off_policy" else 0.0
        for key in ("temperature", "contrastive_temperature", "ce_weight", "kd_weight", "hidden_weight",
                    "contrastive_weight"):
            value = _number(key, getattr(self, key))
            if value < 0 or (value == 0 and key.endswith("temperature")):
                raise DistillationSettingError(key, f"must be {'>' if key.endswith('temperature') else '>='} 0 "
                                               f"(got {value})")
            setattr(self, key, value)
        self.layer_pairs = _layer_pairs(self.layer_pairs)
        if self.teacher_weights is not None:
            weights = self.teacher_weights if isinstance(self.teacher_weights, (list, tuple)) else [self.teacher_weights]
            self.teacher_weights = tuple(_number("teacher_weights", w) for w in weights)
            try:
                losses.normalized_weights(self.teacher_weights, len(self.teacher_weights))
            except ValueError as err:
                raise DistillationSettingError("teacher_weights", str(err)) from None
        length = self.max_completion_length
        if isinstance(length, bool) or not isinstance(length, int) or length < 1:
            raise DistillationSettingError("max_completion_length", f"must be a positive integer (got {length!r})")
        self._check_combination()

    def _check_combination(self) -> None:
        if self.kd == "none" and self.kd_weight not in (0.0, 1.0):
            raise DistillationSettingError("kd_weight", f"{self.kd_weight} weighs a KD term that kd: none turns off")
        if self.kd != "none" and self.kd_weight == 0:
            raise DistillationSettingError("kd_weight", "is 0: write kd: none to train without the KD term")
        if self.hidden_weight > 0 and not self.layer_pairs:
            raise DistillationSettingError("layer_pairs", "hidden_weight > 0 needs layer pairs to match, "
                                           "e.g. [[2, 4], [4, 8]] (student hidden state 2 to teacher's 4, ...)")
        if self.layer_pairs and self.hidden_weight == 0:
            raise DistillationSettingError("hidden_weight", "is 0, so layer_pairs would be unused: "
                                           "set hidden_weight > 0 or leave layer_pairs out")
        if self.method == "on_policy":
            for key in ("ce_weight", "hidden_weight", "contrastive_weight"):
                if getattr(self, key):
                    raise DistillationSettingError(key, "on_policy trains on the KL to the teacher on the "
                                                   "student's own samples alone: set it to 0 or use off_policy")
            if self.kd == "none":
                raise DistillationSettingError("kd", "on_policy needs a KL direction (forward or reverse)")
            if self.kd_weight != 1.0:
                raise DistillationSettingError("kd_weight", "on_policy's loss is the KL alone; leave kd_weight at 1")
            if self.teacher_weights is not None and len(self.teacher_weights) > 1:
                raise DistillationSettingError("teacher_weights", "on_policy (TRL) takes one teacher")
        elif self.kd == "none" and not (self.hidden_weight or self.contrastive_weight):
            raise DistillationSettingError("kd", "with kd: none and no hidden or contrastive weight nothing is "
                                           "distilled; train without a trainer_class for plain fine-tuning")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> "DistillationConfig":
        """From a parameter block (YAML mapping); unknown keys are errors with a suggestion."""
        values = dict(values or {})
        known = [f.name for f in dataclasses.fields(cls)]
        for key in values:
            if key not in known:
                close = difflib.get_close_matches(str(key), known, n=1)
                hint = f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(known)}"
                raise DistillationSettingError(str(key), f"unknown key{hint}")
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        """The resolved settings as plain values (for results.json)."""
        out = dataclasses.asdict(self)
        out["layer_pairs"] = [list(p) for p in self.layer_pairs]
        out["teacher_weights"] = None if self.teacher_weights is None else list(self.teacher_weights)
        return out

    @property
    def needs_hidden_states(self) -> bool:
        return self.hidden_weight > 0 or self.contrastive_weight > 0


def check_teachers(student, teachers: Sequence, config: DistillationConfig) -> list:
    """The teachers as a list, checked against the student and ``config``: a shared vocabulary,
    one weight per teacher, layer pairs inside both models."""
    teachers = [teachers] if isinstance(teachers, nn.Module) else list(teachers or [])
    if not teachers:
        raise ParamsError("distillation needs at least one teacher model")
    if config.teacher_weights is not None and len(config.teacher_weights) != len(teachers):
        raise DistillationSettingError("teacher_weights", f"{len(config.teacher_weights)} weights for "
                                       f"{len(teachers)} teachers; give one weight per teacher")
    student_config = unwrap(student).config.get_text_config()
    for k, teacher in enumerate(teachers):
        teacher_config = unwrap(teacher).config.get_text_config()
        if teacher_config.vocab_size != student_config.vocab_size:
            raise ParamsError(
                f"teacher {k} has vocab_size {teacher_config.vocab_size} but the student has "
                f"{student_config.vocab_size}: distillation compares next-token distributions, so teacher "
                "and student must share one tokenizer and vocabulary size")
        for i, j in config.layer_pairs:
            for who, layer, cfg in (("student", i, student_config), (f"teacher {k}", j, teacher_config)):
                if layer > cfg.num_hidden_layers:
                    raise DistillationSettingError(
                        "layer_pairs", f"[{i}, {j}]: the {who} has {cfg.num_hidden_layers} layers, so its hidden "
                        f"states are numbered 0 (embeddings) to {cfg.num_hidden_layers} (last layer)")
    return teachers


class _WithProjections(nn.Module):
    """The student and the projections under one module, so that Trainer's optimizer set-up
    (weight-decay groups, optimizer choice) covers both; only used to build the optimizer."""

    def __init__(self, student: nn.Module, projections: nn.Module):
        super().__init__()
        self.student, self.projections = student, projections


class _ZeroGradsAfterStep(TrainerCallback):
    """Trainer zeroes the gradients of the model alone (``model.zero_grad()``); without this the
    projections' gradients would add up over every step."""

    def __init__(self, module: nn.Module):
        self.module = module

    def on_optimizer_step(self, args, state, control, **kwargs):
        self.module.zero_grad(set_to_none=True)


class DistillationSFTTrainer(SFTTrainer):
    """``SFTTrainer`` with the distillation loss. Use :func:`distillation_trainer` to bind the
    teachers and config for :func:`mathkit.training.train`; direct use passes ``teachers=`` and
    ``distillation=`` next to SFTTrainer's arguments.

    Teachers are moved to the student's device, put in eval mode and frozen (``requires_grad``
    off), in place. The hidden-state projections (``self.projections``) are in the optimizer, and
    saved next to a checkpoint (``distillation_projections.safetensors``) so that a resumed run
    continues them, never in the student's weights.
    """

    # Every term is a mean over the micro-batch: Trainer divides by the accumulation steps.
    loss_is_scaled_for_ga = False

    def __init__(self, *args, teachers, distillation: DistillationConfig | Mapping | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.distillation = _as_config(distillation)
        self.teachers = check_teachers(self.model, teachers, self.distillation)
        device = self.args.device
        for teacher in self.teachers:
            teacher.eval().requires_grad_(False)
            if any(p.device != device for p in teacher.parameters()):
                teacher.to(device)
        self.projections = self._build_projections()
        if self.projections is not None:
            self.projections.to(device)
            self.add_callback(_ZeroGradsAfterStep(self.projections))
        self._checked_hidden_states = False
        log.info("distillation from %d teacher(s): %s", len(self.teachers), self.distillation.as_dict())

    def _build_projections(self) -> losses.HiddenStateMatcher | None:
        cfg = self.distillation
        if not cfg.needs_hidden_states:
            return None
        width = lambda model: unwrap(model).config.get_text_config().hidden_size  # noqa: E731
        return losses.HiddenStateMatcher(width(self.model), [width(t) for t in self.teachers],
                                         cfg.layer_pairs if cfg.hidden_weight else (),
                                         contrastive=cfg.contrastive_weight > 0)

    # --- optimizer and checkpoints: the projections train with the student, saved on the side ---

    def create_optimizer(self, model=None):
        if self.optimizer is None and self.projections is not None and any(True for _ in self.projections.parameters()):
            return super().create_optimizer(_WithProjections(model or self.model, self.projections))
        return super().create_optimizer(model)

    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        if self.projections is not None and self.args.should_save and self.projections.state_dict():
            from safetensors.torch import save_file

            folder = os.path.join(self._get_output_dir(trial), f"checkpoint-{self.state.global_step}")
            state = {k: v.detach().cpu().contiguous() for k, v in self.projections.state_dict().items()}
            save_file(state, os.path.join(folder, PROJECTIONS_FILE))

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        path = os.path.join(resume_from_checkpoint, PROJECTIONS_FILE)
        if self.projections is not None and os.path.isfile(path):
            from safetensors.torch import load_file

            self.projections.load_state_dict(load_file(path, device=str(self.args.device)))

    # --- the loss ---

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        cfg = self.distillation
        mode = "train" if self.model.training else "eval"
        labels = inputs["labels"]
        model_inputs = {k: v for k, v in inputs.items() if k != "labels"}
        model_inputs["use_cache"] = False
        hidden = cfg.needs_hidden_states
        outputs = model(**model_inputs, output_hidden_states=hidden)
        teacher_outputs = self._teacher_outputs(model_inputs, hidden)
        if hidden:
            self._check_hidden_states(outputs, teacher_outputs)
        mask = losses.completion_positions(labels)
        weights = cfg.teacher_weights
        terms = {"ce": losses.masked_cross_entropy(outputs.logits, labels)}
        if cfg.kd != "none":
            terms["kd"] = losses.kd_loss(outputs.logits, [t.logits for t in teacher_outputs], mask,
                                         direction=cfg.kd, temperature=cfg.temperature, weights=weights)
        if cfg.hidden_weight:
            terms["hidden"] = self.projections.hidden_loss(
                outputs.hidden_states, [t.hidden_states for t in teacher_outputs], mask, weights)
        if cfg.contrastive_weight:
            pool = model_inputs.get("attention_mask")
            terms["contrastive"] = self.projections.contrastive_loss(
                outputs.hidden_states[-1], [t.hidden_states[-1] for t in teacher_outputs],
                None if pool is None else pool.bool(), weights, cfg.contrastive_temperature)
        loss, parts = losses.combine_losses(terms, {"ce": cfg.ce_weight, "kd": cfg.kd_weight,
                                                    "hidden": cfg.hidden_weight,
                                                    "contrastive": cfg.contrastive_weight})
        for key, value in parts.items():  # SFTTrainer.log averages these per logging step
            self._metrics[mode][key].append(value)
        self._metrics[mode]["mean_token_accuracy"].append(_token_accuracy(outputs.logits, labels))
        return (loss, outputs) if return_outputs else loss

    def _teacher_outputs(self, model_inputs: dict, hidden: bool) -> list:
        with torch.no_grad():
            outs = []
            for teacher in self.teachers:
                teacher.eval()
                outs.append(teacher(**model_inputs, output_hidden_states=hidden))
            return outs

    def _check_hidden_states(self, outputs, teacher_outputs) -> None:
        if self._checked_hidden_states:
            return
        for who, out in (("the student", outputs), *((f"teacher {k}", t) for k, t in enumerate(teacher_outputs))):
            if getattr(out, "hidden_states", None) is None:
                raise ParamsError(f"{who} returned no hidden states with output_hidden_states=True, which "
                                  "hidden_weight and contrastive_weight need: set both to 0 for this model")
        self._checked_hidden_states = True


def _token_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    targets = losses.next_token_targets(labels)
    mask = targets != losses.IGNORE_INDEX
    if not bool(mask.any()):
        return 0.0
    return float((logits.detach()[mask].argmax(-1) == targets[mask]).float().mean())


def _as_config(config: DistillationConfig | Mapping | None) -> DistillationConfig:
    return config if isinstance(config, DistillationConfig) else DistillationConfig.from_dict(config)


def distillation_trainer(teachers, config: DistillationConfig | Mapping | None = None) -> type:
    """A trainer class for ``train(..., trainer_class=...)`` with ``teachers`` (one model or a
    list) and ``config`` (a :class:`DistillationConfig` or its dict) bound.

    ``off_policy`` (default): a :class:`DistillationSFTTrainer` subclass. ``on_policy``: a
    :class:`trl.DistillationTrainer` subclass that accepts the ``SFTConfig`` ``train()`` builds
    (see :func:`on_policy_args`). Checks the config now; teachers against the student when the
    trainer is built.
    """
    config = _as_config(config)
    teachers = [teachers] if isinstance(teachers, nn.Module) else list(teachers or [])
    if not teachers:
        raise ParamsError("distillation needs at least one teacher model")
    if config.method == "on_policy":
        if len(teachers) > 1:
            raise ParamsError(f"on_policy distillation (TRL's DistillationTrainer) takes one teacher, "
                              f"got {len(teachers)}")
        return _on_policy_trainer(teachers[0], config)

    class BoundDistillationTrainer(DistillationSFTTrainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, teachers=teachers, distillation=config, **kwargs)

    return BoundDistillationTrainer


def on_policy_args(sft_args, config: DistillationConfig):
    """TRL's ``DistillationConfig`` from the run's ``SFTConfig``: every field they share (the
    TrainingArguments: steps, lr, precision, logging, saving...) carried over, plus the KL
    direction (``beta``), temperature (TRL's: for sampling and for the loss alike) and sampled
    completion length from ``config``."""
    import trl

    shared = {f.name for f in dataclasses.fields(trl.DistillationConfig) if f.init}
    values = {k: v for k, v in sft_args.to_dict().items() if k in shared}
    values.update({k: getattr(sft_args, k) for k in values if k.endswith("_token")})  # to_dict() masks tokens
    values.update(beta=ON_POLICY_BETA[config.kd], temperature=config.temperature,
                  max_completion_length=config.max_completion_length, remove_unused_columns=False,
                  # TRL counts prompt and sampled tokens itself; Trainer's own count finds no input_ids
                  include_num_input_tokens_seen="no")
    return trl.DistillationConfig(**values)


def _on_policy_trainer(teacher, config: DistillationConfig) -> type:
    import trl

    class BoundOnPolicyDistillationTrainer(trl.DistillationTrainer):
        """TRL's on-policy distillation, built from what ``train()`` passes (an SFTConfig)."""

        def __init__(self, *, model, args, **kwargs):
            check_teachers(model, [teacher], config)
            teacher.eval().requires_grad_(False)  # TRL runs it under no_grad; frozen as off-policy
            super().__init__(model=model, teacher_model=teacher, args=on_policy_args(args, config), **kwargs)

    return BoundOnPolicyDistillationTrainer
