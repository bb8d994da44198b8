"""The one model loader: :func:`load` gives ``(model, tokenizer)`` for any name mathkit accepts.

``name_or_path`` is one of
- an offline alias of :mod:`mathkit.models.registry` (``smollm2-135m-instruct``, ``gemma-3-270m``):
  the packaged GGUF, dequantized once into ``cache_dir`` (default ``$MATHKIT_CACHE/models``);
- a local folder: our ``mathkit_decoder`` arithmetic models, any transformers folder, or a peft
  adapter folder, whose base (``base_model_name_or_path``, possibly an alias) is loaded first;
- a hub id (``cache_dir`` is then the hub cache), failing fast offline.

On top of any base, ``adapter=`` attaches a saved LoRA adapter and ``merge=True`` folds it into the
weights (refused on a 4-bit base: merging requantizes and changes generations; load the base in
bf16/fp32 to merge). ``load_in_4bit`` loads NF4 with double quantization through bitsandbytes,
which also runs on the CPU. The model comes back in eval mode; the tokenizer has a pad token.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

import mathkit.models.decoder  # noqa: F401  (registers mathkit_decoder with the Auto classes)
from mathkit.errors import MathkitError, ParamsError
from mathkit.models.gguf import alias_of, convert
from mathkit.models.hub import from_hub
from mathkit.models.io import ModelNotFoundError
from mathkit.models.registry import find_offline

log = logging.getLogger(__name__)

ADAPTER_CONFIG = "adapter_config.json"
_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
           "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}


def resolve_dtype(dtype):
    """A torch dtype (or None / "auto") from a dtype or its name."""
    if dtype is None or isinstance(dtype, torch.dtype) or dtype == "auto":
        return dtype
    try:
        return _DTYPES[str(dtype).lower()]
    except KeyError:
        raise ParamsError(f"unknown dtype {dtype!r}: use one of {sorted(_DTYPES)} or 'auto'") from None


def resolve_device(device) -> str:
    """``device`` as a torch device string; None or "auto" means the GPU when there is one."""
    if device in (None, "auto"):
        from mathkit.env import best_device

        return best_device()
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ParamsError(f"device {device!r}: no CUDA GPU is visible here; use 'cpu' or 'auto'")
    return str(device)


def nf4_config(dtype):
    """bitsandbytes NF4 + double quantization; compute in ``dtype`` (default: bf16 where fast)."""
    from transformers import BitsAndBytesConfig

    if dtype in (None, "auto"):
        from mathkit.env import cpu_supports_bf16

        cuda = torch.cuda.is_available()
        bf16 = torch.cuda.is_bf16_supported() if cuda else cpu_supports_bf16()
        dtype = torch.bfloat16 if bf16 else torch.float16 if cuda else torch.float32
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                              bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=dtype)


def is_quantized(model) -> bool:
    """True for a bitsandbytes 4-/8-bit model (merging into it would requantize)."""
    return bool(getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False))


def _is_pathlike(name: str) -> bool:
    """A name that can only mean a local folder (a hub id looks like ``owner/name``)."""
    return name.startswith((".", "/", "~")) or name.endswith("/") or name.count("/") > 1 or (
        "/" in name and Path(name).parent.exists())


def _from_folder(folder: Path, model_kwargs: dict):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not (folder / "config.json").is_file():
        raise ModelNotFoundError(f"{folder} holds no config.json or {ADAPTER_CONFIG}: it is not a saved "
                                 "model (save one with mathkit.models.save)")
    model = AutoModelForCausalLM.from_pretrained(str(folder), **model_kwargs)
    return model, AutoTokenizer.from_pretrained(str(folder))


def _load_base(name: str, model_kwargs: dict, cache_dir):
    """``(model, tokenizer)`` for an alias, a model folder or a hub id, before any adapter."""
    entry = find_offline(name)
    if entry is not None:
        folder = convert(entry, cache_dir)
        model, tokenizer = _from_folder(folder, model_kwargs)
        if not tokenizer.chat_template:
            raise MathkitError(f"the cached {entry.name} in {folder} lost its chat template: delete "
                               "that folder so that it is converted again")
        return model, tokenizer  # name_or_path stays the cache folder: peft finds its config there
    folder = Path(name).expanduser()
    if folder.is_dir():
        return _from_folder(folder, model_kwargs)
    if _is_pathlike(name):
        raise ModelNotFoundError(f"model folder {name!r} does not exist: check the path, or train and "
                                 "save the model first (a hub id looks like 'owner/name')")
    return from_hub(name, model_kwargs, cache_dir)


def adapter_base(folder: Path) -> str:
    """The base model a saved peft adapter was trained on (an alias when it was one)."""
    base = json.loads((folder / ADAPTER_CONFIG).read_text()).get("base_model_name_or_path")
    if not base:
        raise ModelNotFoundError(f"{folder / ADAPTER_CONFIG} names no base_model_name_or_path; load "
                                 "its base model yourself and pass this folder as adapter=")
    return alias_of(base) or base


def _base_and_adapter(name: str, adapter) -> tuple[str, Path | None]:
    """``(base name, adapter folder or None)``: an adapter folder as the name brings its base."""
    folder = Path(name).expanduser()
    if not (folder / ADAPTER_CONFIG).is_file():
        return name, Path(adapter).expanduser() if adapter else None
    if adapter:
        raise ParamsError(f"{name} is an adapter folder already; pass its base model as the name to "
                          "put another adapter on it")
    return adapter_base(folder), folder


def _check_adapter(folder: Path, *, merge: bool, load_in_4bit: bool) -> None:
    if not (folder / ADAPTER_CONFIG).is_file():
        raise ModelNotFoundError(f"adapter {folder}: no {ADAPTER_CONFIG} there; pass the folder a "
                                 "LoRA run saved its adapter to")
    if merge and load_in_4bit:
        raise ParamsError("refusing to merge an adapter into a 4-bit base: merging requantizes and "
                          "changes generations; load with load_in_4bit=False to merge")


def _attach_adapter(model, folder: Path, *, merge: bool):
    from peft import PeftModel

    if merge and is_quantized(model):  # a folder saved already quantized
        raise ParamsError(f"refusing to merge {folder} into a quantized base: merging requantizes; "
                          "merge into a bf16/fp32 copy of the base")
    model = PeftModel.from_pretrained(model, str(folder))
    return model.merge_and_unload() if merge else model


def _tokenizer_of(folder: Path, fallback):
    """An adapter folder's own tokenizer (it may add tokens), else the base's."""
    from transformers import AutoTokenizer

    if any((folder / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json")):
        return AutoTokenizer.from_pretrained(str(folder))
    return fallback


def _model_kwargs(dtype, load_in_4bit: bool, device_map, device: str, offload_folder) -> dict:
    kwargs: dict = {}
    if dtype is not None:
        kwargs["dtype"] = dtype
    if load_in_4bit:
        kwargs["quantization_config"] = nf4_config(dtype)
        if device_map is None and device.startswith("cuda"):
            device_map = {"": device}  # bitsandbytes places 4-bit weights while loading
    if device_map is not None:
        kwargs["device_map"] = device_map
    if offload_folder is not None:
        kwargs["offload_folder"] = str(offload_folder)
    return kwargs


def _restore_swapped_positional(model, name: str, adapter) -> None:
    """A GPT-NeoX model saved with a swapped positional encoding gets the swap back (with the
    encodings' weights from a full-model folder; an adapter folder carries them itself)."""
    if getattr(model.config, "model_type", None) != "gpt_neox":
        return
    from mathkit.models.neox_positional import apply_saved_positional, saved_swap

    if Path(name).is_dir() and saved_swap(name):
        apply_saved_positional(model, name, weights=True)
    if adapter is not None and saved_swap(adapter):
        apply_saved_positional(model, adapter, weights=False)


def load(name_or_path, *, adapter=None, dtype=None, load_in_4bit: bool = False, device_map=None,
         device=None, cache_dir=None, merge: bool = False, offload_folder=None):
    """``(model, tokenizer)`` for ``name_or_path`` (see the module docstring), in eval mode.

    ``dtype``: a torch dtype, ``"float32"``/``"bfloat16"``/``"float16"``/``"auto"`` or None (as
    saved; the aliases are float32). ``device``: ``"cpu"``, ``"cuda"``, or None for the GPU when
    there is one; ``device_map`` (accelerate's, e.g. ``"auto"``) replaces it. ``merge``: fold the
    adapter into the weights and return the plain model.
    """
    if device is not None and device_map is not None:
        raise ParamsError("pass device or device_map, not both")
    dtype, device = resolve_dtype(dtype), resolve_device(device)
    kwargs = _model_kwargs(dtype, load_in_4bit, device_map, device, offload_folder)
    name, adapter = _base_and_adapter(str(name_or_path), adapter)
    if adapter is not None:
        _check_adapter(adapter, merge=merge, load_in_4bit=load_in_4bit)
    elif merge:
        raise ParamsError("merge=True needs an adapter (an adapter folder, or adapter=)")
    model, tokenizer = _load_base(name, kwargs, cache_dir)
    _restore_swapped_positional(model, name, adapter)
    if adapter is not None:
        model = _attach_adapter(model, adapter, merge=merge)
        tokenizer = _tokenizer_of(adapter, tokenizer)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    if "device_map" not in kwargs and not is_quantized(model):
        model.to(device)
    model.eval()
    log.info("loaded %s (%s) on %s", name_or_path, type(model).__name__, device)
    return model, tokenizer
