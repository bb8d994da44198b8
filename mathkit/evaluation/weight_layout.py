"""Linear weights laid out column-major while a model decodes on the CPU.

``nn.Linear`` keeps its weight as ``[out, in]`` rows and multiplies by its transpose. For the
few-row products of batched decoding, MKL runs that transposed product far below the machine's
speed: measured here (2 threads, SmolLM2-135M's shapes) 45-50 GFLOP/s at 25 rows for
``[in, out]``-contiguous weights' 83-126, and the same at 100 rows. The compacting decoder's
batch shrinks as rows finish, so most of its steps have few rows. Storing each weight's
transpose contiguously (the parameter keeps its shape; only its strides change) hands MKL the
untransposed product. The numbers are those of the same float32 products (the GSM8K benchmark's
100 completions were identical either way); which layout runs faster is a property of the BLAS,
so this is applied on the CPU only and undone afterwards (the weights are contiguous again,
bit for bit, for saving or training).
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn


def _plain_float_weight(module: nn.Module) -> bool:
    """A dense float32 CPU weight owning its whole storage (not quantized, not a view into a flat
    buffer such as FSDP's, whose link a new tensor would break: such a parameter's ``_base`` is
    None, so the storage's size is what tells)."""
    weight = getattr(module, "weight", None)
    return (isinstance(module, nn.Linear) and type(weight) is nn.Parameter and weight.dtype == torch.float32
            and weight.device.type == "cpu" and weight.is_contiguous()
            and weight.untyped_storage().nbytes() == weight.numel() * weight.element_size())


@contextmanager
def column_major_linears(model: nn.Module):
    """Inside the block, every plain float32 CPU ``nn.Linear`` weight of ``model`` is stored
    column-major (a weight shared by several modules, such as a tied embedding, once)."""
    changed, seen = [], set()
    for module in model.modules():
        if _plain_float_weight(module) and id(module.weight) not in seen:
            seen.add(id(module.weight))
            module.weight.data = module.weight.data.t().contiguous().t()
            changed.append(module.weight)
    try:
        yield len(changed)
    finally:
        for weight in changed:
            weight.data = weight.data.contiguous()
