"""One way to save every model in mathkit: our decoder, transformers models, peft adapters.

A saved model is a folder: ``save_pretrained`` safetensors (or a peft adapter), the tokenizer, and
small JSON side files: ``pe_config.json`` for our decoder, whatever the caller adds, and
``mathkit_source.json`` when the weights descend from an offline GGUF alias (so a report about a
fine-tuned model can still say its base weights were dequantized Q4 weights).
:func:`mathkit.models.load` reads any such folder back.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from mathkit.errors import MathkitError, ParamsError
from mathkit.models.config import MathDecoderConfig
from mathkit.models.gguf import SOURCE_FILE, alias_of, read_source
from mathkit.models.positional import check_unshared
from mathkit.models.registry import find_offline

log = logging.getLogger(__name__)

PE_CONFIG = "pe_config"
SOURCE_CONFIG = SOURCE_FILE.removesuffix(".json")
# Files that save_pretrained / tokenizer.save_pretrained / peft / mathkit write themselves.
_RESERVED = {"config", "generation_config", "tokenizer", "tokenizer_config", "special_tokens_map",
             "added_tokens", "adapter_config", "chat_template", "vocab", "preprocessor_config",
             SOURCE_CONFIG}


class ModelNotFoundError(MathkitError, FileNotFoundError):
    """A model folder that was asked for does not exist or holds no model."""


def unwrap(model):
    """The ``PreTrainedModel`` inside a peft wrapper (or ``model`` itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _decoder_config(model) -> MathDecoderConfig | None:
    """Our decoder's config, also when ``model`` is a peft wrapper around it."""
    config = getattr(unwrap(model), "config", None)
    return config if isinstance(config, MathDecoderConfig) else None


def origin_record(model) -> dict | None:
    """Where ``model``'s weights came from, when that was an offline GGUF alias: the content of
    ``mathkit_source.json`` for a folder saved from it. None for any other model."""
    name = str(getattr(unwrap(model), "name_or_path", "") or "")
    alias = alias_of(name) if name else None
    if alias is None and name and Path(name).is_dir():  # a folder saved from an alias-based model
        alias = alias_of((read_source(name) or {}).get("base_model") or "")
    if alias is None:
        return None
    entry = find_offline(alias)
    return {"base_model": entry.name, "made_from": entry.made_from, "package": entry.distribution,
            "quantization": entry.quantization, "weights": f"derived from {entry.weights}"}


def side_configs(model, extra_configs: dict[str, dict] | None = None) -> dict[str, dict]:
    """The JSON side files for ``model``: ``extra_configs``, ``pe_config`` for our decoder and
    ``mathkit_source`` for a model whose weights came from an offline alias."""
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
    swapped = _swapped_positional(model)
    if swapped is not None:  # a GPT-NeoX model whose rotary encoding was swapped (models.neox_positional)
        configs[PE_CONFIG] = {**configs.get(PE_CONFIG, {}), **swapped}
    origin = origin_record(model)
    if origin is not None:
        configs[SOURCE_CONFIG] = origin
    return configs


def _swapped_positional(model) -> dict | None:
    """The ``pe_config`` of a GPT-NeoX model with a swapped positional encoding, else None."""
    if getattr(getattr(unwrap(model), "config", None), "model_type", None) != "gpt_neox":
        return None
    from mathkit.models.neox_positional import positional_settings  # lazy: io is imported by it

    settings = positional_settings(unwrap(model))
    return settings.pe_config() if settings is not None else None


def write_side_configs(out_dir: str | Path, configs: dict[str, dict]) -> None:
    out = Path(out_dir)
    for name, content in configs.items():
        (out / f"{name}.json").write_text(json.dumps(content, indent=2, sort_keys=True, default=str) + "\n")


def save(model, tokenizer, out_dir: str | Path, extra_configs: dict[str, dict] | None = None, *,
         state_dict: dict | None = None) -> Path:
    """Save ``model`` (safetensors, or a peft adapter), ``tokenizer`` and side configs to ``out_dir``.

    Each entry of ``extra_configs`` becomes ``<name>.json``; for our decoder ``pe_config.json``
    (positional encoding name, kind and options) is always written. ``state_dict``: the weights to
    write instead of the model's own (a sharded model's gathered ones,
    :func:`mathkit.training.distributed.full_state_dict`; a peft model keeps its adapter's part).
    Returns the folder.
    """
    configs = side_configs(model, extra_configs)  # validate before writing anything
    if _decoder_config(model) is not None:
        check_unshared(unwrap(model))  # every layer's positional encoding owns its parameters
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, **({"state_dict": state_dict} if state_dict is not None else {}))
    _name_alias_as_adapter_base(out)
    if tokenizer is not None:
        tokenizer.save_pretrained(out)
    write_side_configs(out, configs)
    log.info("saved %s to %s", type(model).__name__, out)
    return out


def _name_alias_as_adapter_base(out: Path) -> None:
    """An adapter on an offline alias names the alias, not this machine's cache folder, so the
    saved folder loads anywhere (and committed files hold no absolute paths)."""
    file = out / "adapter_config.json"
    if not file.is_file():
        return
    config = json.loads(file.read_text())
    alias = alias_of(config.get("base_model_name_or_path") or "")
    path = config.get("base_model_name_or_path")
    if alias and path != alias:
        file.write_text(json.dumps({**config, "base_model_name_or_path": alias}, indent=2, sort_keys=True))
        card = out / "README.md"  # peft's model card names the base too
        if card.is_file():
            card.write_text(card.read_text().replace(path, alias))


def read_side_config(path: str | Path, name: str) -> dict | None:
    """The content of ``<path>/<name>.json``, or None when the model folder has none."""
    file = Path(path) / f"{name}.json"
    return json.loads(file.read_text()) if file.is_file() else None
