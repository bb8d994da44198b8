"""The machine policy: what a training block's precision, device and optimizer become here.

One parameter file serves a CPU laptop, a T4 and an A100, so the choices that only the machine can
make are made here, once, with a log line when a request is changed:

* without a GPU: ``use_cpu`` (under a DeepSpeed launch, the gloo backend instead); ``bf16``
  stays bf16 autocast where the CPU has native bf16 (avx512_bf16/AMX,
  :func:`mathkit.env.cpu_supports_bf16`), else fp32 with a warning; ``fp16``
  (a GPU setting) becomes bf16 or fp32 the same way; paged optimizers (CUDA memory paging) become
  their plain version; ``auto_find_batch_size`` (out-of-memory retries) is off; no pinned memory.
* on a GPU without bf16 (T4, P100): ``bf16`` becomes ``fp16``.
* on a GPU, an optimizer left unset is bitsandbytes' paged 8-bit AdamW (pages optimizer state to
  the CPU under memory pressure), as in the LoRA recipe mathkit follows.

The thread count is not a training setting: ``threads`` in the notebook parameters, applied once
at start-up, holds for training and evaluation alike.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from typing import Any

from mathkit.env import cpu_supports_bf16

log = logging.getLogger(__name__)

GPU_OPTIMIZER = "paged_adamw_8bit"


@dataclass(frozen=True)
class Machine:
    """What the policy needs to know about the hardware."""

    cuda: bool
    cuda_bf16: bool = False
    cpu_bf16: bool = False
    bitsandbytes: bool = False

    @classmethod
    def detect(cls) -> "Machine":
        import torch

        cuda = torch.cuda.is_available()
        return cls(cuda=cuda, cuda_bf16=cuda and torch.cuda.is_bf16_supported(),
                   cpu_bf16=cpu_supports_bf16(),
                   bitsandbytes=importlib.util.find_spec("bitsandbytes") is not None)


def _cpu_precision(values: dict[str, Any], machine: Machine, notes: list[str]) -> None:
    asked = "bf16" if values.get("bf16") else "fp16" if values.get("fp16") else None
    values["fp16"] = False
    values["bf16"] = bool(asked) and machine.cpu_bf16
    if asked == "fp16" and machine.cpu_bf16:
        notes.append("fp16 mixed precision needs a GPU; training in bf16 autocast on this CPU instead")
    elif asked and not machine.cpu_bf16:
        notes.append(f"{asked} was asked for but this CPU has no native bf16 (avx512_bf16/amx); "
                     "training in fp32")


def _cpu_policy(values: dict[str, Any], machine: Machine, notes: list[str]) -> None:
    from mathkit.training.distributed import deepspeed_launched

    if deepspeed_launched():  # DeepSpeed's CPU accelerator: use_cpu would turn DeepSpeed off
        values["ddp_backend"] = "gloo"
    else:
        values["use_cpu"] = True
    values["dataloader_pin_memory"] = False
    _cpu_precision(values, machine, notes)
    optim = str(values.get("optim", ""))
    if optim.startswith("paged_"):
        values["optim"] = optim.removeprefix("paged_")
        notes.append(f"optim={optim} pages optimizer state in CUDA memory; using {values['optim']} on CPU")
    if values.get("auto_find_batch_size"):
        values["auto_find_batch_size"] = False
        notes.append("auto_find_batch_size retries after CUDA out-of-memory errors; off on CPU")


def _gpu_policy(values: dict[str, Any], machine: Machine, user_keys: set[str], notes: list[str]) -> None:
    if values.get("bf16") and not machine.cuda_bf16:
        values["bf16"], values["fp16"] = False, True
        notes.append("this GPU has no bf16 (T4/P100): training in fp16 mixed precision")
    if "optim" not in user_keys and machine.bitsandbytes:
        values["optim"] = GPU_OPTIMIZER


def apply_machine_policy(values: dict[str, Any], *, user_keys: set[str] = frozenset(),
                         machine: Machine | None = None, quiet: bool = False) -> dict[str, Any]:
    """``values`` (SFTConfig keyword arguments) adapted to ``machine`` (default: this one).

    ``user_keys`` are the keys the user wrote; only settings left unset get a machine default.
    Each change of a request is logged as a warning unless ``quiet`` (parameter validation).
    """
    machine = machine or Machine.detect()
    values, notes = dict(values), []
    if machine.cuda:
        _gpu_policy(values, machine, user_keys, notes)
    else:
        _cpu_policy(values, machine, notes)
    for note in notes if not quiet else ():
        log.warning("%s", note)
    return values
