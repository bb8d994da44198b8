"""A causal LM as an ONNX graph with its KV cache as plain inputs and outputs, for ONNX Runtime.

``optimum``'s exporter pins transformers 4.x, so the graph comes from ``torch.onnx.export`` with
the dynamo exporter (``torch.export`` underneath) on a thin wrapper, :class:`CachedStep`, that
takes one decoding step as tensors only (an ONNX graph has no ``Cache`` object)::

    input_ids (B, T)  attention_mask (B, P + T)  position_ids (B, T)
    past_key_values.{i}.key / .value (B, kv_heads, P, head_dim)      for every layer i
    ->  logits (B, 1, V)                         (the last position only: what greedy needs)
        present.{i}.key / .value (B, kv_heads, P + T, head_dim)

``P = 0`` is the prefill (the past tensors are empty), then each step feeds one token per row
and the presents back as the past. The attention mask spans past and new tokens (left padding
stays masked), and positions are given explicitly, as :mod:`mathkit.evaluation.decoding` computes
them, so the graph needs no position logic of its own. Every layer keeps all its keys (transformers'
plain ``DynamicLayer``): a sliding-window model (Gemma 3) applies its window in the attention mask,
which gives the same attention as its shorter window cache.

Our ``mathkit_decoder`` and transformers' decoders (Llama/SmolLM2, Gemma 3) both export through
the same wrapper (a forward may not branch on tensor values while exporting: see :func:`_export`);
a LoRA adapter is merged into the fp32 weights first. The export folder holds the
graph, the tokenizer, the model's config and generation config (stop tokens), the checkpoint's own
side files (``arithmetic_format.json``), and :data:`MANIFEST`, which says what is there;
:mod:`mathkit.inference.onnx_model` reads it back.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch
from transformers import DynamicCache

from mathkit.errors import MathkitError
from mathkit.evaluation.decoding import _cache_keyword  # past_key_values or cache, by version
from mathkit.models.memory_estimate import parameter_bytes

log = logging.getLogger(__name__)

MODEL_FILE = "model.onnx"
MANIFEST = "export_manifest.json"
OPSET = 23  # ONNX Attention, RotaryEmbedding and RMSNormalization: ~1.45x faster decoding in ORT than 18
_TWO_GB = 2 * 1024**3  # protobuf's limit for one file: larger graphs keep their weights beside it
# files that the checkpoint folder holds and the export writes itself (or must not carry along)
_NOT_COPIED = {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
               "special_tokens_map.json", "adapter_config.json", "chat_template.json",
               "model.safetensors.index.json", MANIFEST}


class ExportError(MathkitError):
    """A model could not be exported or checked as asked."""


class CachedStep(torch.nn.Module):
    """One decoding step of ``model`` with the KV cache as a flat tuple of tensors (module doc)."""

    def __init__(self, model, n_layers: int):
        super().__init__()
        self.model, self.n_layers = model, n_layers
        self.cache_keyword = _cache_keyword(model)

    def forward(self, input_ids, attention_mask, position_ids, *past):
        cache = DynamicCache()  # no config: every layer a plain DynamicLayer that keeps all keys
        for i in range(self.n_layers):
            cache.update(past[2 * i], past[2 * i + 1], i)
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         use_cache=True, logits_to_keep=1, **{self.cache_keyword: cache})
        present = []
        for layer in cache.layers:
            present += [layer.keys, layer.values]
        return (out.logits, *present)


def kv_layout(model) -> tuple[int, int, int]:
    """``(layers, kv_heads, head_dim)`` of ``model``'s cache, read from one tiny forward pass
    (configs name heads and head sizes differently; the cache itself does not lie)."""
    cache = DynamicCache()
    ids = torch.zeros((1, 2), dtype=torch.long, device=next(model.parameters()).device)
    with torch.no_grad():
        model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=True,
              **{_cache_keyword(model): cache})
    if not cache.layers or cache.layers[0].keys is None:
        raise ExportError(f"{type(model).__name__} filled no KV cache: only decoders that take a "
                          "transformers DynamicCache can be exported with their cache")
    _, heads, _, head_dim = cache.layers[0].keys.shape
    return len(cache.layers), int(heads), int(head_dim)


def io_names(n_layers: int) -> tuple[list[str], list[str]]:
    """The graph's input and output names (module doc)."""
    kv = [f"{{}}.{i}.{part}" for i in range(n_layers) for part in ("key", "value")]
    return (["input_ids", "attention_mask", "position_ids"] + [k.format("past_key_values") for k in kv],
            ["logits"] + [k.format("present") for k in kv])


def _sample_inputs(model, layout: tuple[int, int, int]) -> tuple:
    """A left-padded batch with a non-empty past: every branch the graph must keep is taken
    (padding in the mask, past and new tokens), and no size is 0 or 1, which torch.export
    would specialise on."""
    n_layers, heads, head_dim = layout
    batch, new, past = 2, 3, 4
    ids = torch.full((batch, new), 3, dtype=torch.long)
    mask = torch.ones((batch, past + new), dtype=torch.long)
    mask[0, :2] = 0
    positions = (mask.cumsum(-1) - 1).clamp_min(0)[:, past:]
    kv = tuple(torch.zeros((batch, heads, past, head_dim)) for _ in range(2 * n_layers))
    return (ids, mask, positions, *kv)


def _dynamic_shapes(n_layers: int) -> tuple:
    Dim = torch.export.Dim
    batch, new, past, total = Dim("batch"), Dim("sequence"), Dim("past_sequence"), Dim("total_sequence")
    return ({0: batch, 1: new}, {0: batch, 1: total}, {0: batch, 1: new},
            tuple({0: batch, 2: past} for _ in range(2 * n_layers)))


@contextmanager
def _quiet(*names: str, level: int = logging.WARNING):
    """The exporter's optimizer passes log one INFO line per folded node and per merged weight
    (thousands for SmolLM2) where a caller logs at INFO: keep their warnings only (or less)."""
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(max(lg.level, level))
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _export(step: CachedStep, sample: tuple, path: Path, names_in, names_out, *, opset: int,
            external_data: bool) -> None:
    """Write the graph through ``torch.export``; its failures become one ExportError.

    A model whose forward branches on tensor values (``if bool(mask.all())``) cannot be captured:
    such a branch must be skipped while exporting (``torch.compiler.is_exporting()``), as our
    decoder's fast unpadded path is; the sample is padded, so the graph keeps the general path."""
    try:
        # naming notes about shared axes; the exporter's registry warns once per process that the
        # torchvision operators (nms, roi_align, ...) it could translate are not installed
        with warnings.catch_warnings(), _quiet("onnxscript", "onnx_ir"), \
                _quiet("torch.onnx._internal.exporter._registration", level=logging.ERROR):
            warnings.filterwarnings("ignore", message=".*axis name.*will not be used")
            warnings.filterwarnings("ignore", message=".*LeafSpec.*")
            program = torch.onnx.export(step.eval(), sample, input_names=names_in,
                                        output_names=names_out,
                                        dynamic_shapes=_dynamic_shapes(step.n_layers), dynamo=True,
                                        opset_version=opset, verbose=False)
    except Exception as err:  # torch.export's errors share no public base class
        text = str(err)
        hint = ""
        if "GuardOnDataDependentSymNode" in text or "data-dependent" in text:
            where = [line.strip() for line in text.splitlines() if line.strip().startswith("File ")]
            hint = (" The forward branches on tensor values" + (f" ({where[-1]})" if where else "") +
                    "; skip that branch when torch.compiler.is_exporting().")
        raise ExportError(f"torch.onnx.export could not capture {type(step.model).__name__}.{hint} "
                          f"First line of the error: {text.strip().splitlines()[0][:300]}") from err
    program.save(str(path), external_data=external_data)


def export_model_onnx(model, path: str | Path, *, opset: int = OPSET) -> dict:
    """Write ``model`` (fp32, eval, CPU) as an ONNX graph with its KV cache to ``path``; return
    the graph's layout for the manifest (inputs, outputs, cache shape, opset, seconds)."""
    path = Path(path)
    model = model.float().eval().to("cpu")
    layout = kv_layout(model)
    names_in, names_out = io_names(layout[0])
    n_bytes = parameter_bytes(model)
    t0 = time.perf_counter()
    with torch.no_grad():
        _export(CachedStep(model, layout[0]), _sample_inputs(model, layout), path, names_in, names_out,
                opset=opset, external_data=n_bytes >= _TWO_GB)
    seconds = time.perf_counter() - t0
    log.info("exported %s to %s in %.1f s", type(model).__name__, path, seconds)
    return {"opset": opset, "exporter": f"torch.onnx.export(dynamo=True), torch {torch.__version__}",
            "inputs": names_in, "outputs": names_out,
            "kv_cache": {"layers": layout[0], "kv_heads": layout[1], "head_dim": layout[2]},
            "vocab_size": int(model.config.vocab_size), "export_seconds": round(seconds, 1)}


def file_bytes(path: str | Path) -> int:
    """Size of an ONNX file plus its external-data file, if it has one."""
    path = Path(path)
    data = path.with_name(path.name + ".data")
    return path.stat().st_size + (data.stat().st_size if data.is_file() else 0)


def _copy_side_files(checkpoint: str, out: Path) -> None:
    """The checkpoint folder's own JSON side files (``arithmetic_format.json``, ...)."""
    folder = Path(checkpoint).expanduser()
    if not folder.is_dir():
        return
    for f in folder.glob("*.json"):
        if f.name not in _NOT_COPIED and not (out / f.name).exists():
            shutil.copy2(f, out / f.name)


def read_manifest(folder: str | Path) -> dict:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise ExportError(f"{folder} has no {MANIFEST}: it is not an ONNX export; write one with "
                          "`python -m mathkit export --format onnx --checkpoint ... --output DIR`")
    return json.loads(path.read_text())


def write_manifest(folder: str | Path, manifest: dict) -> Path:
    path = Path(folder) / MANIFEST
    path.write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    return path


def export_onnx(checkpoint, output_dir, *, adapter=None, int8: bool = False, opset: int = OPSET,
                probe_prompts: list[str] | None = None) -> Path:
    """Export ``checkpoint`` (an alias, a model folder or an adapter folder; ``adapter`` merged
    first) to ``output_dir``: graph, tokenizer, configs and manifest; with ``int8`` also the
    int8 variant (:mod:`mathkit.export.quantize`) and its agreement with fp32 on
    ``probe_prompts`` (default: a few prompts that suit the tokenizer). Returns the folder."""
    import onnx
    import onnxruntime

    from mathkit.models import load

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    merge = adapter is not None or (Path(str(checkpoint)) / "adapter_config.json").is_file()
    model, tokenizer = load(checkpoint, adapter=adapter, merge=merge, dtype=torch.float32, device="cpu")
    graph = export_model_onnx(model, out / MODEL_FILE, opset=opset)
    tokenizer.save_pretrained(out)
    model.config.save_pretrained(out)
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(out)
    _copy_side_files(str(checkpoint), out)
    manifest = {
        "format": "onnx",
        "source": {"checkpoint": str(checkpoint), "adapter": str(adapter) if adapter else None,
                   "merged_adapter": merge, "model_type": model.config.model_type,
                   "architecture": type(model).__name__},
        **graph,
        "versions": {"onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__},
        "tokenizer": "saved beside the graph (AutoTokenizer.from_pretrained on this folder)",
        "variants": {"fp32": {"file": MODEL_FILE, "bytes": file_bytes(out / MODEL_FILE), "quantization": None}},
    }
    write_manifest(out, manifest)
    del model
    if int8:
        from mathkit.export.quantize import add_int8_variant

        add_int8_variant(out, probe_prompts=probe_prompts)
    return out
