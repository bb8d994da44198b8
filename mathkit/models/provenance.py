"""What a model name stands for, for a report's provenance, without loading the model.

:func:`describe` answers: where the weights come from (a package, a folder, the hub), which hub
model they were made from, how they were quantized (e.g. "Q4_1 GGUF, dequantized to float32"),
and how many parameters they hold when the safetensors headers can tell it cheaply.
"""

from __future__ import annotations

import json
from pathlib import Path

from mathkit.models.gguf import cache_path, is_converted, read_source
from mathkit.models.loading import ADAPTER_CONFIG, adapter_base
from mathkit.models.registry import OfflineModel, find_offline


def count_parameters(folder: str | Path) -> int | None:
    """Parameters stored in ``folder``'s safetensors files (ties saved once), read from the file
    headers only; None when there are none."""
    from safetensors import safe_open

    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        return None
    total = 0
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            for key in handle.keys():
                size = 1
                for dim in handle.get_slice(key).get_shape():
                    size *= dim
                total += size
    return total


def _describe_alias(entry: OfflineModel, cache_dir=None) -> dict:
    folder = cache_path(entry, cache_dir)
    return {
        "name": entry.name, "source": "package", "package": entry.distribution,
        "file": entry.gguf_file, "made_from": entry.made_from,
        "quantization": f"{entry.quantization} GGUF, dequantized to float32",
        "weights": entry.weights,
        "parameters": count_parameters(folder) if is_converted(folder) else None,
    }


def _describe_folder(folder: Path, name: str) -> dict:
    if (folder / ADAPTER_CONFIG).is_file():
        base = describe(adapter_base(folder))
        return {"name": name, "source": "folder", "kind": "adapter", "made_from": base["made_from"],
                "quantization": base["quantization"], "weights": f"adapter on {base['name']}",
                "parameters": count_parameters(folder), "base": base}
    config = folder / "config.json"
    model_type = json.loads(config.read_text()).get("model_type") if config.is_file() else None
    info = {"name": name, "source": "folder", "kind": model_type, "made_from": None,
            "quantization": None, "weights": f"saved model ({model_type})",
            "parameters": count_parameters(folder)}
    record = read_source(folder) or {}
    entry = find_offline(record.get("base_model") or record.get("name") or "")
    if entry is not None:  # converted from, or saved after training on, an offline alias
        base = _describe_alias(entry)
        info.update(made_from=entry.made_from, quantization=base["quantization"],
                    weights=record.get("weights") or entry.weights, base=base)
    return info


def describe(name_or_path, *, cache_dir=None) -> dict:
    """Provenance of a model name: ``name``, ``source`` (package / folder / hub), ``made_from``
    (hub id), ``quantization``, ``weights`` (one line for a report), ``parameters`` (or None);
    an adapter or a model saved from an alias also has ``base`` (the same fields for its base)."""
    name = str(name_or_path)
    entry = find_offline(name)
    if entry is not None:
        return _describe_alias(entry, cache_dir)
    folder = Path(name).expanduser()
    if folder.is_dir():
        return _describe_folder(folder, name)
    return {"name": name, "source": "hub", "made_from": name, "quantization": None,
            "weights": f"{name} from the Hugging Face hub", "parameters": None}
