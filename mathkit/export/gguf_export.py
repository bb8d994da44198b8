"""GGUF export for llama.cpp: a transformers model (or a LoRA adapter merged into its base) as one
``.gguf`` file in a chosen quantization, with the tokenizer and a manifest beside it.

Route: load the model in float32 (an adapter merged into the fp32 base, never into a 4-bit one),
save it as a transformers folder in a temporary directory, convert that folder to an F32 GGUF with
llama.cpp's own ``convert_hf_to_gguf.py``, then quantize with llama.cpp's ``llama_model_quantize``
(through ``llama_cpp``, the runtime that will read the file). F32 keeps the converted file as is.

Where the converter comes from. The ``llama-cpp-python`` wheel holds the compiled library only;
the converter (``convert_hf_to_gguf.py`` + its ``conversion/`` package + ``gguf-py``) ships in the
source distribution, which vendors llama.cpp at exactly the version the wheel was built from. The
converter and the runtime must agree (a new architecture or metadata key is added to both at once),
so :func:`fetch_converter` downloads *that* sdist with pip (``pip download --no-binary :all:
llama-cpp-python==<installed version>``, the client and index that installed it) and keeps just
those three entries (~2 MB) in mathkit's cache, once. Alternatives considered: pip's build folder
is deleted after the build and its cache keeps wheels, not sources; the PyPI ``gguf`` package has
the writer but no converter; writing tensors with gguf-py ourselves would re-implement the
tokenizer metadata and per-architecture fixes (Gemma-3's norm shift) the converter already has.
A llama.cpp checkout named by ``$MATHKIT_LLAMA_CPP_SOURCE`` is used instead when set. The converter
runs in a subprocess: it puts its own ``gguf-py`` first on ``sys.path``, which must not shadow the
``gguf`` package transformers uses here. It needs ``sentencepiece`` even for BPE tokenizers.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from mathkit.errors import MathkitError, ParamsError

log = logging.getLogger(__name__)

# Quantization name -> llama.cpp's llama_ftype constant in ``llama_cpp`` (the names llama-quantize takes).
QUANTIZATIONS = {
    "F32": "LLAMA_FTYPE_ALL_F32",
    "F16": "LLAMA_FTYPE_MOSTLY_F16",
    "Q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0",
    "Q6_K": "LLAMA_FTYPE_MOSTLY_Q6_K",
    "Q5_K_M": "LLAMA_FTYPE_MOSTLY_Q5_K_M",
    "Q4_K_M": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
    "Q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0",
}
MANIFEST = "export_manifest.json"  # the name the ONNX export uses too
CONVERTER_ENV = "MATHKIT_LLAMA_CPP_SOURCE"  # a llama.cpp source tree holding convert_hf_to_gguf.py
DISTRIBUTION = "llama-cpp-python"
_CONVERTER_PARTS = ("convert_hf_to_gguf.py", "conversion", "gguf-py", "LICENSE")
_INSTALL_HINT = (f"install the edge extra (`pip install 'mathkit[edge]'`, i.e. {DISTRIBUTION}==0.3.36 "
                 "and sentencepiece; pip builds llama.cpp from source in ~5 minutes)")


def normalize_quantization(quantization: str) -> str:
    """``quantization`` as a key of :data:`QUANTIZATIONS` (case-insensitive), or a ParamsError."""
    key = str(quantization).strip().upper()
    if key not in QUANTIZATIONS:
        raise ParamsError(f"unknown GGUF quantization {quantization!r}: use one of {list(QUANTIZATIONS)}")
    return key


def llama_cpp_version() -> str:
    """The installed llama-cpp-python version, or a MathkitError saying how to install it."""
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise MathkitError(f"GGUF export and the llama.cpp backend need {DISTRIBUTION}: {_INSTALL_HINT}") from None


def _converter_cache(version: str) -> Path:
    from mathkit.models.gguf import mathkit_cache_dir

    return mathkit_cache_dir() / "llama.cpp" / f"{DISTRIBUTION}-{version}"


def find_converter() -> Path | None:
    """The folder holding ``convert_hf_to_gguf.py`` (``$MATHKIT_LLAMA_CPP_SOURCE``, else the copy
    :func:`fetch_converter` left for the installed llama-cpp-python), or None when there is none."""
    given = os.environ.get(CONVERTER_ENV)
    if given:
        folder = Path(given).expanduser()
        if not (folder / "convert_hf_to_gguf.py").is_file():
            raise MathkitError(f"${CONVERTER_ENV}={given} holds no convert_hf_to_gguf.py: point it at a "
                               "llama.cpp source tree, or unset it to use the converter of the installed "
                               f"{DISTRIBUTION}")
        return folder
    folder = _converter_cache(llama_cpp_version())
    return folder if (folder / "convert_hf_to_gguf.py").is_file() else None


def _extract_converter(sdist: Path, target: Path) -> None:
    """Copy the converter's parts out of ``sdist``'s ``vendor/llama.cpp`` into ``target``."""
    with tarfile.open(sdist) as archive:
        members = []
        for member in archive.getmembers():
            parts = Path(member.name).parts  # <dist>-<version>/vendor/llama.cpp/<part>/...
            if len(parts) > 3 and parts[1:3] == ("vendor", "llama.cpp") and parts[3] in _CONVERTER_PARTS:
                member.name = str(Path(*parts[3:]))
                members.append(member)
        if not any(m.name == "convert_hf_to_gguf.py" for m in members):
            raise MathkitError(f"{sdist.name} has no vendor/llama.cpp/convert_hf_to_gguf.py; set "
                               f"${CONVERTER_ENV} to a llama.cpp source tree instead")
        archive.extractall(target, members=members, filter="data")


def fetch_converter() -> Path:
    """llama.cpp's converter matching the installed llama-cpp-python, in mathkit's cache: found
    there, or fetched once by pip from that version's source distribution (module doc)."""
    found = find_converter()
    if found is not None:
        return found
    version = llama_cpp_version()
    target = _converter_cache(version)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".fetch-") as tmp:
        log.info("fetching llama.cpp's converter from the %s %s source distribution", DISTRIBUTION, version)
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
               f"{DISTRIBUTION}=={version}", "--dest", tmp]
        done = subprocess.run(cmd, capture_output=True, text=True)
        sdists = sorted(Path(tmp).glob("*.tar.gz"))
        if done.returncode != 0 or not sdists:
            reason = (done.stderr.strip().splitlines() or ["pip brought no source distribution"])[-1]
            raise MathkitError(
                f"could not fetch llama.cpp's convert_hf_to_gguf.py (the {DISTRIBUTION} {version} source "
                f"distribution) with pip: {reason}. Run it where pip reaches the package index, or set "
                f"${CONVERTER_ENV} to a llama.cpp source tree")
        staging = Path(tmp) / "converter"
        _extract_converter(sdists[0], staging)
        try:
            staging.rename(target)  # whole or not at all: a half-extracted folder is never trusted
        except OSError:
            if not (target / "convert_hf_to_gguf.py").is_file():  # not another process's finished copy
                raise
    return target


def _check_exportable(model) -> None:
    """Refuse models llama.cpp would run as a different network than torch does."""
    from mathkit.models.io import side_configs

    config = model.config
    if getattr(config, "model_type", None) == "mathkit_decoder":
        raise ParamsError("mathkit's arithmetic decoder is not a llama.cpp architecture: export it with "
                          "--format onnx")
    if "pe_config" in side_configs(model):
        raise ParamsError(f"this {config.model_type} model has a swapped positional encoding "
                          "(pe_config.json), which llama.cpp does not run: export it with --format onnx")


def _load_fp32(checkpoint, adapter):
    from mathkit.models import load
    from mathkit.models.loading import ADAPTER_CONFIG

    merge = adapter is not None or (Path(str(checkpoint)).expanduser() / ADAPTER_CONFIG).is_file()
    return load(checkpoint, adapter=adapter, merge=merge, dtype="float32", device="cpu")


def _run_converter(converter: Path, model_dir: Path, out_file: Path) -> None:
    if importlib.util.find_spec("sentencepiece") is None:
        raise MathkitError(f"llama.cpp's converter imports sentencepiece, which is not installed: {_INSTALL_HINT}")
    cmd = [sys.executable, str(converter / "convert_hf_to_gguf.py"), str(model_dir), "--outtype", "f32",
           "--outfile", str(out_file)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("NO_LOCAL_GGUF", None)  # the converter must use its own gguf-py, not the installed one
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0 or not out_file.is_file():
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise MathkitError(f"llama.cpp's convert_hf_to_gguf.py failed on {model_dir.name} "
                           f"(exit {done.returncode}):\n{tail}")


def quantize_gguf(source: Path, target: Path, quantization: str, *, threads: int | None = None) -> Path:
    """Write ``source`` (an F32/F16 GGUF) as ``target`` in ``quantization`` with llama.cpp's
    ``llama_model_quantize`` (the library behind ``llama-quantize``)."""
    import llama_cpp

    key = normalize_quantization(quantization)
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, QUANTIZATIONS[key])
    params.nthread = threads or 0  # 0: llama.cpp picks the hardware threads
    # llama.cpp logs a line per tensor, and two per tensor that falls back to another type (K-quants
    # need rows that are a multiple of 256: all of SmolLM2's 576-wide ones). They are collected here
    # instead of reaching stderr (hundreds of lines in a notebook); its summary line is logged.
    collected: list[str] = []

    @llama_cpp.llama_log_callback
    def collect(level, text, user_data):
        collected.append(text.decode("utf-8", errors="replace"))

    llama_cpp.llama_log_set(collect, ctypes.c_void_p(0))
    try:
        code = llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(), ctypes.byref(params))
    finally:
        from llama_cpp._logger import llama_log_callback  # llama-cpp-python's own, set when it imports

        llama_cpp.llama_log_set(llama_log_callback, ctypes.c_void_p(0))
    for line in "".join(collected).splitlines():
        if "required fallback quantization" in line:
            log.warning("%s: %s (K-quants need rows that are a multiple of 256)", key, line.split("WARNING:")[-1].strip())
    if code != 0 or not target.is_file():
        raise MathkitError(f"llama.cpp could not quantize {source.name} to {key} (code {code}): "
                           + " ".join("".join(collected).split()[-40:]))
    return target


def _require_llama_cpp():
    llama_cpp_version()  # the clear message when the distribution is missing
    try:
        import llama_cpp  # noqa: F401
    except (ImportError, OSError) as err:  # OSError: the shared library does not load
        raise MathkitError(f"{DISTRIBUTION} is installed but does not import ({err}): reinstall it") from err


def _source_record(checkpoint, adapter) -> dict:
    from mathkit.models import describe

    record = {"checkpoint": str(checkpoint), "model": describe(checkpoint)}
    if adapter is not None:
        record["adapter"] = str(adapter)
    return record


def export_gguf(checkpoint, output_dir, *, quantization: str = "Q8_0", adapter=None) -> Path:
    """Export ``checkpoint`` (an alias, a transformers folder or an adapter folder; ``adapter`` is
    merged first) to ``output_dir/model.<QUANT>.gguf``; returns the file's path.

    Beside it: the HF tokenizer and generation config (prompts are tokenized by the same tokenizer
    as under torch, stop tokens kept) and ``export_manifest.json`` (format, file, quantization, source,
    llama-cpp-python version, size, seconds). Settings are checked before any model is loaded."""
    key = normalize_quantization(quantization)
    _require_llama_cpp()
    converter = fetch_converter()
    start = time.perf_counter()
    model, tokenizer = _load_fp32(checkpoint, adapter)
    _check_exportable(model)
    out = Path(output_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"model.{key}.gguf"
    with tempfile.TemporaryDirectory(prefix="mathkit-gguf-") as tmp:
        hf_dir, f32 = Path(tmp) / "hf", Path(tmp) / "model.F32.gguf"
        model.save_pretrained(hf_dir)
        tokenizer.save_pretrained(hf_dir)
        parameters = model.num_parameters()
        del model
        log.info("converting %s to GGUF with %s", checkpoint, converter)
        _run_converter(converter, hf_dir, f32)
        if key == "F32":
            shutil.move(f32, target)
        else:
            quantize_gguf(f32, target, key)
        tokenizer.save_pretrained(out)
        if (hf_dir / "generation_config.json").is_file():
            shutil.copy(hf_dir / "generation_config.json", out / "generation_config.json")
    manifest = {"format": "gguf", "file": target.name, "quantization": key,
                "source": _source_record(checkpoint, adapter), "converter": "llama.cpp convert_hf_to_gguf.py",
                "llama_cpp_python": llama_cpp_version(), "size_bytes": target.stat().st_size,
                # K-quants need rows of 256: narrower models (SmolLM2's 576) fall back per tensor, so say
                # what the file holds on average
                "bits_per_weight": round(8 * target.stat().st_size / parameters, 2),
                "seconds": round(time.perf_counter() - start, 1)}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    log.info("wrote %s (%.1f MB, %s)", target, target.stat().st_size / 2**20, key)
    return target
