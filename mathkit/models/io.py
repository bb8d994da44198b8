"""One way to save and load every model in mathkit: our decoder, hub models, peft adapters.

A saved model is a folder: ``save_pretrained`` safetensors (or a peft adapter), the tokenizer, and
small JSON side files such as ``pe_config.json``. :func:`load_model` looks at what the folder
holds and picks the loader, so notebooks and the CLI never have to know which kind they got.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import torch

from mathkit.errors import HubUnavailableError, MathkitError, ParamsError
from mathkit.models.config import MathDecoderConfig
from mathkit.models.decoder import MathDecoderForCausalLM

log = logging.getLogger(__name__)

PE_CONFIG = "pe_config"
# Files that save_pretrained / tokenizer.save_pretrained / peft write themselves.
_RESERVED = {"config", "generation_config", "tokenizer", "tokenizer_config", "special_tokens_map",
             "added_tokens", "adapter_config", "chat_template", "vocab", "preprocessor_config"}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


class ModelNotFoundError(MathkitError, FileNotFoundError):
    """A model folder that was asked for does not exist or holds no model."""


def _decoder_config(model) -> MathDecoderConfig | None:
    """Our decoder's config, also when ``model`` is a peft wrapper around it."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(base, "config", None)
    return config if isinstance(config, MathDecoderConfig) else None


def side_configs(model, extra_configs: dict[str, dict] | None = None) -> dict[str, dict]:
    """The JSON side files for ``model``: ``extra_configs`` plus ``pe_config`` for our decoder."""
    configs = dict(extra_configs or {})
    for name in configs:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or name.endswith(".json") or name in _RESERVED:
            raise ParamsError(f"extra config name {name!r} is not usable: give a plain file stem "
                              f"(letters, digits, _ . -), not one of {sorted(_RESERVED)}")
    decoder = _decoder_config(model)
    if decoder is not None:
        own = decoder.pe_config()
        given = configs.get(PE_CONFIG)
        if given is not None and any(given.get(k) != v for k, v in own.items() if k in given):
            raise ParamsError(f"extra_configs['{PE_CONFIG}'] = {given} contradicts the model's own "
                              f"positional encoding {own}; leave it out, it is written from the model")
        configs[PE_CONFIG] = {**(given or {}), **own}
    return configs


def write_side_configs(out_dir: str | Path, configs: dict[str, dict]) -> None:
    out = Path(out_dir)
    for name, content in configs.items():
        (out / f"{name}.json").write_text(json.dumps(content, indent=2, sort_keys=True, default=str) + "\n")


def save_model(model, tokenizer, out_dir: str | Path,
               extra_configs: dict[str, dict] | None = None) -> Path:
    """Save ``model`` (safetensors, or a peft adapter), ``tokenizer`` and side configs to ``out_dir``.

    Each entry of ``extra_configs`` becomes ``<name>.json``; for our decoder ``pe_config.json``
    (positional encoding name, kind and options) is always written. Returns the folder.
    """
    configs = side_configs(model, extra_configs)  # validate before writing anything
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    if tokenizer is not None:
        tokenizer.save_pretrained(out)
    write_side_configs(out, configs)
    log.info("saved %s to %s", type(model).__name__, out)
    return out


def read_side_config(path: str | Path, name: str) -> dict | None:
    """The content of ``<path>/<name>.json``, or None when the model folder has none."""
    file = Path(path) / f"{name}.json"
    return json.loads(file.read_text()) if file.is_file() else None


def _resolve_dtype(dtype: Any):
    if dtype is None or isinstance(dtype, torch.dtype) or dtype == "auto":
        return dtype
    value = getattr(torch, str(dtype), None)
    if not isinstance(value, torch.dtype):
        raise ParamsError(f"unknown dtype {dtype!r}; use e.g. 'float32', 'bfloat16', 'float16' or 'auto'")
    return value


def _model_type(folder: Path) -> str | None:
    config = folder / "config.json"
    if not config.is_file():
        return None
    return json.loads(config.read_text()).get("model_type")


def _load_tokenizer(*candidates: str | Path):
    from transformers import AutoTokenizer

    errors = []
    for source in candidates:
        try:
            return AutoTokenizer.from_pretrained(str(source))
        except (OSError, ValueError) as err:
            errors.append(f"{source}: {err}")
    raise ModelNotFoundError("no tokenizer found with the model; tried " + "; ".join(errors))


def _looks_like_hub_id(name: str) -> bool:
    """``org/name`` or ``name``, and not a path under an existing local folder."""
    if not _HUB_ID.match(name):
        return False
    parent = Path(name).parent
    return parent == Path(".") or not parent.exists()


def _load_weights(source: str | Path, dtype):
    """Model weights (no tokenizer) from a local folder or a hub name."""
    from transformers import AutoModelForCausalLM

    folder = Path(source)
    kwargs = {} if dtype is None else {"dtype": dtype}
    if folder.is_dir():
        if _model_type(folder) == MathDecoderConfig.model_type:
            return MathDecoderForCausalLM.from_pretrained(folder, **kwargs)
        if not (folder / "config.json").is_file():
            raise ModelNotFoundError(f"{folder} holds no config.json or adapter_config.json: it is not a "
                                     f"saved model (save one with mathkit.models.save_model)")
        return AutoModelForCausalLM.from_pretrained(folder, **kwargs)
    name = str(source)
    from mathkit.models.base import is_offline_alias, load_base_model

    if is_offline_alias(name):  # e.g. an adapter trained on the offline SmolLM2
        return load_base_model(name, dtype=dtype)[0]
    if isinstance(source, Path) or not _looks_like_hub_id(name):
        raise ModelNotFoundError(f"model folder {name} does not exist; check the path (or train and save "
                                 f"the model first)")
    try:
        return AutoModelForCausalLM.from_pretrained(name, **kwargs)
    except OSError as err:
        raise HubUnavailableError(f"{name!r} is not a local folder and could not be loaded from the Hugging "
                                  f"Face hub or its cache ({err.__class__.__name__}); download it where the "
                                  f"hub is reachable, or pass a local folder") from err


def load_model(path: str | Path, *, device: str | torch.device = "cpu", dtype=None):
    """Load ``(model, tokenizer)`` from a folder written by :func:`save_model`, or a hub name.

    Dispatch: a peft adapter folder (``adapter_config.json``) loads its base from
    ``base_model_name_or_path`` (itself through this function) and wraps it in ``PeftModel``; a
    ``mathkit_decoder`` folder loads our class; anything else goes to ``AutoModelForCausalLM``.
    The model comes back in eval mode on ``device``.
    """
    dtype = _resolve_dtype(dtype)
    folder = Path(path)
    adapter = folder / "adapter_config.json"
    if adapter.is_file():
        from peft import PeftModel

        base_name = json.loads(adapter.read_text()).get("base_model_name_or_path")
        if not base_name:
            raise ModelNotFoundError(f"{adapter} names no base_model_name_or_path; cannot find the base model")
        base = _load_weights(base_name, dtype)
        model = PeftModel.from_pretrained(base, str(folder))
        has_tokenizer = any((folder / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json"))
        tokenizer = _load_tokenizer(*([folder] if has_tokenizer else []), base_name)
    else:
        model = _load_weights(path, dtype)
        tokenizer = _load_tokenizer(str(path))
    model.to(device)
    model.eval()
    return model, tokenizer
