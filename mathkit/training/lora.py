"""LoRA and QLoRA set-up through peft: the adapter config, attaching it, counting, merging.

The recipe (r=32, alpha=64, dropout 0.1 on every attention and MLP projection) comes from the
TinyLlama/Mistral LoRA project notebook 02 reproduces. A 4-bit (NF4) base is QLoRA: it is prepared
with peft's ``prepare_model_for_kbit_training`` (norms in fp32, inputs requiring grad) before the
adapter goes on. Training itself is :func:`mathkit.training.train`; loading a saved adapter is
``mathkit.models.load(base, adapter=folder)``.
"""

from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training

from mathkit.errors import ParamsError
from mathkit.models.loading import is_quantized
from mathkit.params.lora_sft import check_lora_settings

log = logging.getLogger(__name__)

EMBEDDING_MODULES = ("embed_tokens", "lm_head")


def has_tied_embeddings(model) -> bool:
    """True when the input embedding and the LM head share one weight (SmolLM2 does)."""
    try:
        inp, out = model.get_input_embeddings(), model.get_output_embeddings()
    except (AttributeError, NotImplementedError):
        return False
    return inp is not None and out is not None and inp.weight is out.weight


def build_lora_config(*, r: int = 32, alpha: float = 64, dropout: float = 0.1,
                      target_modules: list[str] | tuple[str, ...] = (),
                      tied_embeddings: bool = False) -> LoraConfig:
    """A causal-LM ``LoraConfig``; ``ensure_weight_tying`` when a tied embedding is targeted
    (peft would otherwise untie ``embed_tokens`` and ``lm_head``)."""
    check_lora_settings(r=r, alpha=alpha, dropout=dropout, target_modules=target_modules)
    touches_embeddings = any(m in EMBEDDING_MODULES for m in target_modules)
    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(target_modules),
                      bias="none", task_type="CAUSAL_LM",
                      ensure_weight_tying=bool(tied_embeddings and touches_embeddings))


def check_targets_exist(model, target_modules) -> None:
    """Fail with one line naming what the model does have, instead of peft's long error."""
    if target_modules == "all-linear" or list(target_modules) == ["all-linear"]:
        return
    have = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules() if name}
    missing = [m for m in target_modules if m not in have]
    if missing:
        linear = sorted({name.rsplit(".", 1)[-1] for name, mod in model.named_modules()
                         if isinstance(mod, torch.nn.Linear) or "Linear" in type(mod).__name__})
        raise ParamsError(f"lora_target_modules: {missing} not found in {type(model).__name__}; "
                          f"its linear layers are {linear}")


@contextmanager
def _quiet_peft():
    """peft calls transformers 5's deprecated ``*gradient_checkpointing*`` aliases: noise, not news."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*gradient_checkpointing.*", category=FutureWarning)
        yield


def attach_lora(model, lora_config: LoraConfig, *, gradient_checkpointing: bool = False) -> PeftModel:
    """Wrap ``model`` with a trainable LoRA adapter; a 4-bit model is prepared for k-bit training
    first (QLoRA). ``gradient_checkpointing`` must match the training block's
    ``activation_checkpointing``: k-bit preparation enables it on the base."""
    check_targets_exist(model, lora_config.target_modules)
    with _quiet_peft():
        if is_quantized(model):
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
        peft_model = get_peft_model(model, lora_config)
    stats = trainable_parameters(peft_model)
    log.info("LoRA: %d trainable of %d parameters (%.3f%%)", stats["trainable"], stats["total"],
             stats["percent"])
    return peft_model


def trainable_parameters(model) -> dict:
    """``{"trainable", "total", "percent"}``; 4-bit weights counted at their real size."""
    if hasattr(model, "get_nb_trainable_parameters"):
        trainable, total = model.get_nb_trainable_parameters()
    else:
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in model.parameters())
    return {"trainable": int(trainable), "total": int(total),
            "percent": 100.0 * trainable / total if total else 0.0}


def merge_for_inference(model):
    """The adapter folded into a full-precision base (the same function without two extra
    matmuls per projection: generation is several times faster on CPU); a 4-bit base keeps the
    adapter separate, since merging would requantize and change generations."""
    if is_quantized(model) or not isinstance(model, PeftModel):
        return model
    return model.merge_and_unload()


def save_merged(model, tokenizer, out_dir: str | Path, *, base_model: str, adapter_dir: str | Path,
                device: str = "cpu", **load_kwargs) -> Path:
    """Save base + adapter as one plain full-precision model in ``out_dir``.

    A full-precision ``model`` is merged (:func:`merge_for_inference`, in place) and saved. A 4-bit
    one is not merged: the base is reloaded in bf16 (GPU) or fp32 (CPU), the adapter from
    ``adapter_dir`` merged into it, and that is saved. ``load_kwargs`` go to
    :func:`mathkit.models.load` (``device_map``, ``offload_folder``, ``cache_dir``).
    """
    from mathkit.memory import release_memory
    from mathkit.models import load, save

    if not is_quantized(model):
        return save(merge_for_inference(model), tokenizer, out_dir)
    dtype = "bfloat16" if device == "cuda" else "float32"
    merged, _ = load(base_model, adapter=adapter_dir, merge=True, dtype=dtype, **load_kwargs)
    try:
        return save(merged, tokenizer, out_dir)
    finally:
        del merged
        release_memory()
