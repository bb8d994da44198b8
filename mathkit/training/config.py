"""The training settings: a dict of TRL ``SFTConfig`` field names, checked by building that config.

A notebook's ``training:`` block names ``SFTConfig`` fields (which include every field of
transformers' ``TrainingArguments``) and nothing else. What a run uses is, in order of precedence:

1. the block itself,
2. :data:`MATHKIT_DEFAULTS` (the few places where mathkit differs from TRL, with the reason) and
   the defaults of :func:`eval_defaults` when there is a validation set (evaluation follows
   checkpointing; without one, nothing is evaluated),
3. TRL's own defaults,

then :func:`mathkit.training.policy.apply_machine_policy` adapts precision, device and optimizer to
the machine. :func:`check_training` is what parameter validation calls (before any kernel starts);
:func:`build_sft_config` is what :func:`mathkit.training.train` calls. Both raise
:class:`~mathkit.params.TrainingSettingError` naming ``training.<key>`` in one line.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import logging
import typing
from pathlib import Path
from typing import Any

from mathkit.params import TrainingSettingError
from mathkit.training.policy import apply_machine_policy

log = logging.getLogger(__name__)

# Where mathkit's defaults differ from TRL's, and why.
MATHKIT_DEFAULTS: dict[str, Any] = {
    "bf16": False,                      # TRL: on. Asked for explicitly; the policy maps it per machine
    "activation_checkpointing": False,  # TRL: on. Recomputes activations (slower); GPU profiles turn it on
    "report_to": "none",                # no tracker unless asked (offline first)
    "lr_scheduler_type": "cosine",      # transformers: linear
    "logging_first_step": True,         # the loss curve starts at the untrained model
    "save_total_limit": 2,              # checkpoints hold optimizer state: keep the disk small
    "include_num_input_tokens_seen": "non_padding",  # training tokens/s counts real tokens
    "prediction_loss_only": True,       # evaluation needs the loss only, not the logits
    "dataloader_num_workers": 0,        # tokenized in memory: workers only add start-up time
    "disable_tqdm": True,               # reports hold no progress bars; metrics.jsonl has every log
}

# Deprecated names transformers still accepts; the new name is used so that defaults cannot
# silently override what the user wrote under the old one.
ALIASES = {"gradient_checkpointing": "activation_checkpointing",
           "gradient_checkpointing_kwargs": "activation_checkpointing_kwargs"}

# Fields the notebook sets from its own parameters, not from the training block.
RESERVED = {
    "output_dir": "it is the checkpoint folder train() is given (checkpoint_dir / the output folder)",
    "seed": "set the notebook's top-level `seed`, which seeds data, model and training alike",
}

# Simple range checks TrainingArguments itself does not make.
POSITIVE = ("learning_rate", "num_train_epochs", "per_device_train_batch_size",
            "per_device_eval_batch_size", "gradient_accumulation_steps", "logging_steps",
            "eval_steps", "save_steps", "save_total_limit", "max_length")
NON_NEGATIVE = ("weight_decay", "warmup_steps", "max_grad_norm", "dataloader_num_workers")


@functools.lru_cache(maxsize=1)
def sft_fields() -> dict[str, Any]:
    """``{field name: type annotation}`` of ``SFTConfig`` (imports trl, so only when needed)."""
    from trl import SFTConfig

    hints = typing.get_type_hints(SFTConfig)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(SFTConfig) if f.init}


@functools.lru_cache(maxsize=None)
def _type_adapter(key: str):
    from pydantic import ConfigDict, TypeAdapter

    return TypeAdapter(sft_fields()[key], config=ConfigDict(strict=True, arbitrary_types_allowed=True))


def _check_type(key: str, value: Any) -> Any:
    """``value`` checked (strictly) against the field's annotation; numbers written as text
    (YAML reads ``1e-4`` without a dot as a string) become numbers."""
    from pydantic import ValidationError

    adapter = _type_adapter(key)
    try:
        adapter.validate_python(value)
        return value  # as written: an int stays an int where the field also takes floats
    except ValidationError as err:
        if isinstance(value, str):
            try:
                adapter.validate_python(float(value))
                return float(value)
            except (ValueError, ValidationError):
                pass
        raise TrainingSettingError(key, f"{err.errors()[0]['msg'].lower()} (got {value!r})") from None


def _check_key(key: Any, value: Any) -> Any:
    """One key of a block: an ``SFTConfig`` field, of the field's type, in range."""
    if not isinstance(key, str):
        raise TrainingSettingError(str(key), "keys of the training block are SFTConfig field names")
    if key == "output_dir":
        raise TrainingSettingError(key, f"not allowed here: {RESERVED[key]}")
    if key not in sft_fields():
        close = difflib.get_close_matches(key, list(sft_fields()), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise TrainingSettingError(key, f"unknown key: not a field of TRL's SFTConfig{hint}")
    value = _check_type(key, value)
    if key in POSITIVE and value is not None and not value > 0:
        raise TrainingSettingError(key, f"must be > 0 (got {value!r})")
    if key in NON_NEGATIVE and value is not None and value < 0:
        raise TrainingSettingError(key, f"must be >= 0 (got {value!r})")
    return value


def checked_block(block: Any) -> dict[str, Any]:
    """Every key of ``block`` checked by :func:`_check_key`; numbers written as text converted."""
    if not isinstance(block, dict):
        raise TrainingSettingError("", f"expected a mapping of SFTConfig field names to values, got {block!r}")
    return {key: _check_key(key, value) for key, value in block.items()}


def check_training(block: dict[str, Any]) -> dict[str, Any]:
    """Validate a notebook's training block; return it with numbers-as-text converted.

    Keys and types are checked one by one, then the whole block is built into an ``SFTConfig``
    on this machine (with an evaluation set), so value errors that only TRL or transformers know
    about (an unknown scheduler, ``load_best_model_at_end`` with mismatched steps) surface here.
    """
    for key in RESERVED:
        if isinstance(block, dict) and key in block:
            raise TrainingSettingError(key, f"not allowed here: {RESERVED[key]}")
    checked = checked_block(block)
    warmup, steps = checked.get("warmup_steps", 0), checked.get("max_steps", -1)
    if warmup >= 1 and steps > 0 and warmup > steps:
        raise TrainingSettingError("warmup_steps", f"{warmup} warmup steps exceed max_steps ({steps})")
    build_sft_config(checked, output_dir="trainer_output", has_eval=True, quiet=True)
    return checked


def eval_defaults(values: dict[str, Any]) -> dict[str, Any]:
    """Defaults with a validation set: evaluate at every checkpoint (``eval_steps`` and
    ``save_steps`` follow each other when only one is given) and track the best checkpoint by
    validation loss."""
    save_strategy = values.get("save_strategy", "steps")
    out = {"eval_strategy": values.get("eval_strategy", save_strategy)}
    if "eval_steps" in values and "save_steps" not in values:
        out["save_steps"] = values["eval_steps"]
    elif "save_steps" in values and "eval_steps" not in values:
        out["eval_steps"] = values["save_steps"]
    if out["eval_strategy"] != "no" and "metric_for_best_model" not in values:
        out.update(metric_for_best_model="eval_loss", greater_is_better=False)
    return out


def merged_settings(training: dict[str, Any], *, has_eval: bool) -> dict[str, Any]:
    """The block over mathkit's defaults, deprecated names renamed; before the machine policy."""
    block = {ALIASES.get(key, key): value for key, value in training.items()}
    values = {**MATHKIT_DEFAULTS, **block}
    if has_eval:
        values.update({k: v for k, v in eval_defaults(values).items() if k not in block})
    else:  # nothing to evaluate on, whatever the block says
        if values.get("load_best_model_at_end"):
            log.warning("load_best_model_at_end needs a validation set; there is none, so the last "
                        "weights are kept")
        values.update(eval_strategy="no", load_best_model_at_end=False, metric_for_best_model=None)
    return values


def _build(values: dict[str, Any], output_dir: str):
    from trl import SFTConfig

    return SFTConfig(output_dir=output_dir, **values)


def _culprit(training: dict[str, Any], values: dict[str, Any], output_dir: str) -> str:
    """The training key to blame for a config that does not build: the first one whose removal
    lets it build (else the last key of the block)."""
    for key in training:
        without = {k: v for k, v in values.items() if k != ALIASES.get(key, key)}
        try:
            _build(without, output_dir)
            return key
        except Exception:  # noqa: BLE001 - any failure means this key is not the only cause
            continue
    return next(reversed(training), "")


def build_sft_config(training: dict[str, Any], *, output_dir: str | Path, has_eval: bool,
                     quiet: bool = False):
    """The ``SFTConfig`` a run uses: the block over mathkit's defaults, adapted to this machine
    (``quiet``: without logging what the machine policy changed)."""
    training = checked_block(training)
    values = apply_machine_policy(merged_settings(training, has_eval=has_eval), user_keys=set(training),
                                  quiet=quiet)
    try:
        return _build(values, str(output_dir))
    except Exception as err:  # noqa: BLE001 - TrainingArguments raises ValueError, TypeError, KeyError...
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise TrainingSettingError(_culprit(training, values, str(output_dir)), message) from None
