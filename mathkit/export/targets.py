"""One model exported for the edge in the formats a run asks for, each written once.

A *target* is a format a person deploying the model would run: ``onnx_fp32`` and ``onnx_int8``
(ONNX Runtime, :mod:`mathkit.export.onnx_export` / :mod:`mathkit.export.quantize`), ``gguf_q8_0``
and ``gguf_q4_k_m`` (llama.cpp, :mod:`mathkit.export.gguf_export`). :func:`export_targets` writes
the ONNX graph once for both ONNX targets and one GGUF file per quantization (anew each call, or
kept from an earlier call with ``reuse=True``), and returns an :class:`EdgeModel` per target: what
:func:`mathkit.inference.load_backend` needs to open it, its file size and the seconds its export
took. llama.cpp targets are skipped, with the reason, where ``llama-cpp-python`` is not installed
(it is the optional ``mathkit[edge]`` extra); every other failure is raised.
"""

from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass, field
from pathlib import Path

from mathkit.errors import ParamsError

# target -> (backend, load_backend keywords)
TARGETS: dict[str, tuple[str, dict]] = {
    "onnx_fp32": ("onnx", {"variant": "fp32"}),
    "onnx_int8": ("onnx", {"variant": "int8"}),
    "gguf_q8_0": ("llama_cpp", {}),
    "gguf_q4_k_m": ("llama_cpp", {}),
}
GGUF_QUANTIZATION = {"gguf_q8_0": "Q8_0", "gguf_q4_k_m": "Q4_K_M"}


@dataclass(frozen=True)
class EdgeModel:
    """One exported target: where it is, how to open it, how large it is."""

    name: str
    backend: str
    path: str
    file_bytes: int
    export_seconds: float | None  # None: found in the folder from an earlier export; onnx_int8 asked
    # for without onnx_fp32 includes the fp32 export it was quantized from
    load_kwargs: dict = field(default_factory=dict)

    def load(self, threads: int | None = None):
        """``(model, tokenizer)`` through :func:`mathkit.inference.load_backend`."""
        from mathkit.inference import load_backend

        return load_backend(self.path, self.backend, threads=threads, **self.load_kwargs)


def check_targets(targets) -> list[str]:
    """``targets`` as a list of known target names, each once; ParamsError naming the bad ones."""
    targets = list(targets)
    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        raise ParamsError(f"unknown edge target(s) {unknown}: use {list(TARGETS)}")
    if len(set(targets)) != len(targets):
        raise ParamsError(f"edge targets repeat in {targets}; list each once")
    return targets


def llama_cpp_missing() -> str | None:
    """Why the llama.cpp targets cannot run here, or None when they can."""
    if importlib.util.find_spec("llama_cpp") is None:
        return "llama-cpp-python is not installed (pip install 'mathkit[edge]')"
    return None


def export_targets(checkpoint, output_dir, targets, *, adapter=None,
                   reuse: bool = False) -> tuple[list[EdgeModel], dict[str, str]]:
    """Export ``checkpoint`` (``adapter`` merged first) to every target under ``output_dir``
    (``onnx/``, ``gguf_Q8_0/``, ...). Returns the exported models in the order asked, and
    ``{target: reason}`` for the targets skipped. ``reuse``: keep exports an earlier call left
    there (only right when the checkpoint has not changed since: a benchmark of a fixed model),
    except an ONNX export of another opset than this version writes (an older exporter's graph);
    otherwise the targets' folders are written anew."""
    import shutil

    from mathkit.export.onnx_export import MANIFEST, OPSET, export_onnx, file_bytes, read_manifest

    targets = check_targets(targets)
    out = Path(output_dir)
    if not reuse:
        for folder in ["onnx", *(f"gguf_{q}" for q in GGUF_QUANTIZATION.values())]:
            shutil.rmtree(out / folder, ignore_errors=True)
    elif (out / "onnx" / MANIFEST).is_file() and read_manifest(out / "onnx").get("opset") != OPSET:
        shutil.rmtree(out / "onnx")
    exported, skipped, seconds = [], {}, {}
    onnx_dir = out / "onnx"
    if any(t.startswith("onnx_") for t in targets):
        if not (onnx_dir / MANIFEST).is_file():
            t0 = time.perf_counter()
            export_onnx(checkpoint, onnx_dir, adapter=adapter)
            seconds["onnx_fp32"] = time.perf_counter() - t0
        if "onnx_int8" in targets and "int8" not in read_manifest(onnx_dir)["variants"]:
            from mathkit.export.quantize import add_int8_variant

            t0 = time.perf_counter()
            add_int8_variant(onnx_dir)
            seconds["onnx_int8"] = time.perf_counter() - t0
            if "onnx_fp32" not in targets and "onnx_fp32" in seconds:  # int8 alone: it needed the export too
                seconds["onnx_int8"] += seconds["onnx_fp32"]
    for name in targets:
        backend, kwargs = TARGETS[name]
        if backend == "onnx":
            variant = read_manifest(onnx_dir)["variants"][kwargs["variant"]]
            exported.append(EdgeModel(name, backend, str(onnx_dir), variant["bytes"], seconds.get(name), dict(kwargs)))
            continue
        reason = llama_cpp_missing()
        if reason:
            skipped[name] = reason
            continue
        from mathkit.export.gguf_export import export_gguf

        quantization = GGUF_QUANTIZATION[name]
        folder = out / f"gguf_{quantization}"
        found = sorted(folder.glob(f"*.{quantization}.gguf")) if folder.is_dir() else []
        took = None
        if not found:
            t0 = time.perf_counter()
            found = [export_gguf(checkpoint, folder, quantization=quantization, adapter=adapter)]
            took = time.perf_counter() - t0
        exported.append(EdgeModel(name, backend, str(found[0]), file_bytes(found[0]), took, dict(kwargs)))
    return exported, skipped
