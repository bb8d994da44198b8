"""LoRA and QLoRA set-up through peft: the adapter config, attaching it, counting, merging.

The recipe (r=32, alpha=64, dropout 0.1 on every attention and MLP projection) comes from the
TinyLlama/Mistral LoRA project notebook 02 reproduces. A 4-bit (NF4) base is QLoRA: it is prepared
with peft's ``prepare_model_for_kbit_training`` (norms in fp32, inputs requiring grad) before the
adapter goes on; on a vision-language checkpoint the adapter stays on the language model
(:func:`non_text_modules`). Training itself is :func:`mathkit.training.train`; loading a saved
adapter is ``mathkit.models.load(base, adapter=folder)``.

QLoRA's adapter is merged into the base reloaded *un-quantized* (:func:`save_merged`): merging
into the 4-bit base requantizes every weight, which :func:`requantized_merge` measures.
:func:`fingerprint` and :func:`compare_fingerprints` check that two models (merged vs adapter on
its base, 4-bit vs un-quantized) answer alike, and :func:`full_finetune_estimate` gives the cost of
the full fine-tuning LoRA avoids, from a measured LoRA run.
"""

from __future__ import annotations

import copy
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
                      tied_embeddings: bool = False, exclude_modules: str | None = None) -> LoraConfig:
    """A causal-LM ``LoraConfig``; ``ensure_weight_tying`` when a tied embedding is targeted
    (peft would otherwise untie ``embed_tokens`` and ``lm_head``). ``exclude_modules``: a regex
    of module names to leave alone (:func:`non_text_modules`)."""
    check_lora_settings(r=r, alpha=alpha, dropout=dropout, target_modules=target_modules)
    touches_embeddings = any(m in EMBEDDING_MODULES for m in target_modules)
    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(target_modules),
                      bias="none", task_type="CAUSAL_LM", exclude_modules=exclude_modules,
                      ensure_weight_tying=bool(tied_embeddings and touches_embeddings))


# Submodules of vision-language checkpoints (Gemma-3 4B+, PaliGemma, LLaVA) that text never reaches.
NON_TEXT_SUBMODULES = ("vision_tower", "multi_modal_projector", "vision_model", "audio_tower")


def non_text_modules(model) -> str | None:
    """A regex for ``build_lora_config(exclude_modules=...)`` naming the vision (or audio) parts
    of ``model``, or None for a text-only model.

    ``google/gemma-3-4b-it`` loads as ``Gemma3ForConditionalGeneration``: its SigLIP tower has
    ``q_proj``/``k_proj``/``v_proj`` too, which LoRA would otherwise adapt although text
    fine-tuning never sends an image through them (parameters trained on nothing)."""
    present = sorted({part for name, _ in model.named_modules() for part in name.split(".")
                      if part in NON_TEXT_SUBMODULES})
    return rf".*\b({'|'.join(present)})\b.*" if present else None


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


# ---- QLoRA's way out: the adapter merged into the un-quantized base, and checked ------------

@torch.no_grad()
def prompt_logits(model, tokenizer, prompts: list[str]) -> torch.Tensor:
    """The next-token logits (fp32) at the end of each prompt, one prompt at a time (no padding,
    so two models are compared on exactly the same computation)."""
    bos = getattr(tokenizer, "bos_token", None)
    rows = []
    for prompt in prompts:
        ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=not (bos and prompt.startswith(bos)))
        ids = {k: v.to(model.device) for k, v in ids.items()}
        rows.append(model(**ids).logits[0, -1].float().cpu())
    return torch.stack(rows)


def fingerprint(model, tokenizer, prompts: list[str], *, max_new_tokens: int = 32) -> dict:
    """What ``model`` answers to ``prompts``: greedy completions (fp32, one batch) and the
    next-token logits at the end of each prompt."""
    from mathkit.training.reload_check import greedy_completions

    return {"completions": greedy_completions(model, tokenizer, prompts, max_new_tokens=max_new_tokens),
            "logits": prompt_logits(model, tokenizer, prompts)}


def compare_fingerprints(a: dict, b: dict, *, atol: float = 1e-3) -> dict:
    """How far two :func:`fingerprint` s of the same prompts lie apart: identical completions
    (count and share), the largest absolute logit difference, whether it is within ``atol``, and
    how often the two agree on the next token."""
    same = [x == y for x, y in zip(a["completions"], b["completions"])]
    diff = (a["logits"] - b["logits"]).abs().max().item() if a["logits"].numel() else 0.0
    top = (a["logits"].argmax(-1) == b["logits"].argmax(-1)).float().mean().item()
    return {"n": len(same), "identical_completions": sum(same), "all_identical": all(same),
            "max_abs_logit_diff": diff, "atol": atol, "within_tolerance": diff <= atol,
            "next_token_agreement": top}


def requantized_merge(model):
    """Merge the adapter *into* a 4-bit base, which dequantizes each weight, adds the update and
    quantizes it again: lossy. Only to measure how lossy (compare :func:`fingerprint` s before and
    after); the merged model to keep comes from :func:`save_merged`. Returns the plain model."""
    if not (is_quantized(model) and isinstance(model, PeftModel)):
        raise ParamsError("requantized_merge takes a LoRA model on a 4-bit base")
    with warnings.catch_warnings():  # peft warns that this changes generations: what we measure
        warnings.filterwarnings("ignore", message=".*4-bit.*")
        warnings.filterwarnings("ignore", message=".*rounding errors.*")
        return model.merge_and_unload()


def full_finetune_estimate(*, parameters: int, lora_peak_mb: float, lora_tokens_per_s: float,
                           bytes_per_parameter: int = 4) -> dict:
    """Full fine-tuning, estimated from a measured LoRA run of the same model, data and batch.

    Memory: LoRA's peak plus, for every parameter, its gradient and AdamW's two moments
    (3 x ``bytes_per_parameter``; fp32 here), which LoRA does not hold for frozen weights.
    Speed: per token a frozen matmul weight costs 2 FLOPs per parameter forward and 2 backward
    (the input gradient); a trained one 2 more (its weight gradient): 6/4 of LoRA's work (the
    adapter's own work is <2% and left out), so tokens/s x 4/6. The optimizer step and the
    larger memory traffic make the real run slower still: a lower bound on its cost.
    """
    state_mb = 3 * bytes_per_parameter * parameters / 2**20
    return {"parameters": parameters, "peak_mb": lora_peak_mb + state_mb,
            "gradient_and_adam_state_mb": state_mb, "tokens_per_s": lora_tokens_per_s * 4 / 6,
            "how": "estimated: LoRA's measured peak + gradient and two AdamW moments per parameter "
                   f"({3 * bytes_per_parameter} bytes); LoRA's tokens/s x 4/6 (weight gradients)"}


def measure_training(base_model: str, dataset, *, lora_config: LoraConfig | None, training: dict,
                     output_dir: str | Path, load_kwargs: dict | None = None):
    """Train ``base_model`` (loaded fresh with ``load_kwargs``: 4-bit or not, dtype) with
    ``lora_config`` for ``training['max_steps']`` steps on ``dataset``, nothing evaluated or saved,
    and free it again: a side measurement of speed and peak memory that leaves nothing behind.
    Returns ``(TrainResult, parameters of the base model)``."""
    import shutil

    from mathkit.memory import release_memory
    from mathkit.models import load
    from mathkit.training.trainer import train

    model, tokenizer = load(base_model, **(load_kwargs or {}))
    parameters = sum(p.numel() for p in model.parameters())
    if lora_config is not None:  # a copy: peft fills in a config it is given
        model = attach_lora(model, copy.deepcopy(lora_config),
                            gradient_checkpointing=bool(training.get("activation_checkpointing")))
    settings = {**training, "save_strategy": "no", "load_best_model_at_end": False}
    try:
        result = train(model, tokenizer, dataset, None, output_dir=output_dir, training=settings, resume=False)
    finally:
        del model
        release_memory()
        shutil.rmtree(output_dir, ignore_errors=True)
    return result, parameters
