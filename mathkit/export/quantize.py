"""int8 variants of an ONNX export, and how closely each one follows the fp32 graph.

Three recipes of ``onnxruntime.quantization``, all without calibration data:

* ``weight_only`` (the default): every MatMul weight stored as int8 in blocks of 32 with one scale
  each (``MatMulNBits``, symmetric; ``accuracy_level=4``: each block of activations is quantized
  to int8 on the fly, so the int8 kernels run). A tied output layer (SmolLM2, Gemma) reads the
  embedding through a ``Transpose``, which no quantizer touches: it is folded into its own
  constant first, so the output layer, a fifth of SmolLM2's weights and the largest MatMul, is
  quantized too, and the embedding then reads its rows from those int8 blocks (one copy of the
  table: SmolLM2's file went from 0.34x to 0.29x of fp32; with blocks of 64 it is 0.27x but
  next-token agreement fell from 97.4% to 96.9% on the probe; both on the opset-18 graph). An
  untied embedding table is stored as int8 rows with one scale per row. The int8 values alone are
  0.25x of fp32; the fp32 scale of each block of 32 adds an eighth of that.
* ``dynamic``: ``quantize_dynamic``, int8 weights per tensor and activations quantized per batch
  at run time (``MatMulInteger``).
* ``dynamic_per_channel``: the same with one weight scale per output channel.

Measured on SmolLM2-135M-Instruct (8 GSM8K prompts, 48 greedy tokens, teacher forcing):
next-token agreement with fp32 of 0.98 for MatMul-only weight-only int8 (fp32 compute), 0.85
per channel, 0.82 per tensor (the issue measured ~0.6 for per-tensor dynamic int8 outside the
project); the manifest records the number of each export.

Accuracy is measured, not assumed: :func:`agreement` greedy-decodes probe prompts with the fp32
graph, then feeds those tokens to the int8 graph (teacher forcing) and counts how often its argmax
is the same token, and how many whole greedy completions are identical.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from pathlib import Path

from mathkit.errors import ParamsError
from mathkit.export.onnx_export import file_bytes, read_manifest, write_manifest

log = logging.getLogger(__name__)

METHODS = ("weight_only", "dynamic", "dynamic_per_channel")
DEFAULT_METHOD = "weight_only"
BLOCK_SIZE = 32
ACCURACY_LEVEL = 4  # MatMulNBits: int8 activations per block (its int8 kernels); 0 dequantizes to fp32
MIN_TABLE = 1 << 20  # embedding tables of fewer values than this stay fp32 (our 20-token decoder's)
PROBE_QUESTIONS = 8  # GSM8K originals for a language model's probe
ARITHMETIC_PROBES = ("12+34=", "907-58=", "6*7=", "123+989=", "4005-16=", "25*31=", "1+1=", "700*3=")


def quantize_int8(source: str | Path, target: str | Path, *, method: str = DEFAULT_METHOD) -> dict:
    """Write the int8 version of the graph ``source`` to ``target``; return what was done."""
    if method not in METHODS:
        raise ParamsError(f"unknown int8 method {method!r}: use one of {list(METHODS)}")
    source, target = Path(source), Path(target)
    t0 = time.perf_counter()
    if method == "weight_only":
        import onnx
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

        model = onnx.load(str(source))
        folded = fold_constant_transposes(model)
        quantizer = MatMulNBitsQuantizer(model, bits=8, block_size=BLOCK_SIZE, is_symmetric=True,
                                         accuracy_level=ACCURACY_LEVEL, op_types_to_quantize=("MatMul",))
        with _quiet_root_logger():
            quantizer.process()
        model = quantizer.model.model
        shared = share_tied_tables(model)
        tables = quantize_embedding_rows(model)
        onnx.save_model(model, str(target))
        details = {"weights": f"MatMul: int8, symmetric, blocks of {BLOCK_SIZE} (MatMulNBits, accuracy_level "
                              f"{ACCURACY_LEVEL}); embedding: read from the tied output layer's int8 blocks "
                              "where it has one, else int8 rows with one scale each",
                   "activations": "fp32 between layers; int8 per block inside MatMulNBits",
                   "folded_transposes": folded, "shared_tied_tables": shared, "embedding_tables": tables}
    else:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        with _quiet_root_logger():
            quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8,
                             per_channel=method == "dynamic_per_channel")
        details = {"weights": "int8 " + ("per channel" if method == "dynamic_per_channel" else "per tensor"),
                   "activations": "int8, quantized per batch at run time"}
    seconds = time.perf_counter() - t0
    log.info("int8 (%s) %s -> %s in %.1f s", method, source.name, target.name, seconds)
    return {"method": method, **details, "quantize_seconds": round(seconds, 1)}


@contextmanager
def _quiet_root_logger():
    """onnxruntime's quantizers log every skipped node on the root logger at INFO."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        root.setLevel(level)


def fold_constant_transposes(model) -> int:
    """Replace each ``Transpose`` of an initializer by a transposed initializer (in place), so the
    MatMul behind it has a constant weight a quantizer can take. Returns how many were folded."""
    import numpy as np
    from onnx import numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    folded = []
    for node in graph.node:
        if node.op_type == "Transpose" and node.input[0] in inits:
            perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
            array = numpy_helper.to_array(inits[node.input[0]])
            graph.initializer.append(numpy_helper.from_array(
                np.ascontiguousarray(np.transpose(array, perm)), name=node.output[0]))
            folded.append(node)
    for node in folded:
        graph.node.remove(node)
    return len(folded)


def share_tied_tables(model) -> int:
    """Let each embedding table that is also a quantized output layer (a tied table, folded by
    :func:`fold_constant_transposes`) be read from that layer's int8 blocks, and drop the fp32
    table: ``Gather(blocks) -> Cast -> Sub(128) -> Mul(Gather(scales)) -> Reshape``, standard ONNX
    operators. Without this the table is stored twice (as the output layer's blocks and as the
    embedding's rows), a fifth of SmolLM2's weights. Returns how many tables were shared.

    A ``MatMulNBits`` weight of ``N`` outputs and ``K`` inputs is ``N`` rows of ``K / block``
    blocks (uint8, zero point 128, one scale each), so output row ``n`` is the table's row ``n``.
    The pair is matched by content, not by name: the blocks must dequantize to the table within
    one quantization step everywhere (the quantizer's clipping of the largest value reaches 1)."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    candidates = [n for n in graph.node if n.op_type == "MatMulNBits" and len(n.input) == 3
                  and _attribute(n, "bits") == 8 and n.input[1] in inits and n.input[2] in inits]
    done = 0
    for name, init, nodes in _gathered_tables(graph):
        rows, width = init.dims
        match = next((n for n in candidates if _attribute(n, "N") == rows and _attribute(n, "K") == width
                      and width % _attribute(n, "block_size") == 0), None)
        if match is None:
            continue
        blocks = numpy_helper.to_array(inits[match.input[1]])
        scales = numpy_helper.to_array(inits[match.input[2]]).reshape(rows, -1)
        table = numpy_helper.to_array(init)
        dequantized = (blocks.astype(np.float32) - 128) * scales[:, :, None]
        step = np.repeat(np.abs(scales), blocks.shape[-1], axis=1)  # onnxruntime's symmetric scales are negative
        if not (np.abs(dequantized.reshape(rows, width) - table) <= 1.001 * step + 1e-12).all():
            continue
        graph.initializer.remove(init)
        graph.initializer.extend([numpy_helper.from_array(np.array(128, np.float32), name=f"{name}.zero_point"),
                                  numpy_helper.from_array(np.array([width], np.int64), name=f"{name}.width"),
                                  numpy_helper.from_array(np.array([-1], np.int64), name=f"{name}.last_axis")])
        scale_name = match.input[2]
        if len(inits[scale_name].dims) != 2:  # [N, blocks] to gather rows of scales
            graph.initializer.append(numpy_helper.from_array(scales, name=f"{name}.block_scales"))
            scale_name = f"{name}.block_scales"
        for node in nodes:
            out, ids, base = node.output[0], node.input[1], f"{node.output[0]}.tied"
            node.input[0], node.output[0] = match.input[1], f"{base}.blocks"
            _insert_after(graph, node, [
                helper.make_node("Cast", [f"{base}.blocks"], [f"{base}.values"], to=TensorProto.FLOAT,
                                 name=f"{node.name}_cast"),
                helper.make_node("Sub", [f"{base}.values", f"{name}.zero_point"], [f"{base}.centred"],
                                 name=f"{node.name}_centre"),
                helper.make_node("Gather", [scale_name, ids], [f"{base}.scales"], name=f"{node.name}_scales"),
                helper.make_node("Unsqueeze", [f"{base}.scales", f"{name}.last_axis"], [f"{base}.scales_1"],
                                 name=f"{node.name}_scales_axis"),
                helper.make_node("Mul", [f"{base}.centred", f"{base}.scales_1"], [f"{base}.rows"],
                                 name=f"{node.name}_dequantize"),
                helper.make_node("Shape", [ids], [f"{base}.ids_shape"], name=f"{node.name}_ids_shape"),
                helper.make_node("Concat", [f"{base}.ids_shape", f"{name}.width"], [f"{base}.shape"], axis=0,
                                 name=f"{node.name}_shape"),
                helper.make_node("Reshape", [f"{base}.rows", f"{base}.shape"], [out], name=f"{node.name}_rows")])
        done += 1
    return done


def _gathered_tables(graph) -> list[tuple[str, object, list]]:
    """``(name, initializer, readers)`` of each 2-D float initializer that only ``Gather`` nodes
    read, as their data along axis 0: the embedding tables whose rows can be stored otherwise."""
    from onnx import TensorProto

    readers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    return [(init.name, init, readers[init.name]) for init in list(graph.initializer)
            if init.data_type == TensorProto.FLOAT and len(init.dims) == 2 and readers.get(init.name)
            and all(n.op_type == "Gather" and n.input[0] == init.name and _attribute(n, "axis", 0) == 0
                    for n in readers[init.name])]


def _insert_after(graph, node, new_nodes: list) -> None:
    """Insert ``new_nodes`` right after ``node``, in order (the graph stays topologically sorted)."""
    index = list(graph.node).index(node)
    for offset, new in enumerate(new_nodes):
        graph.node.insert(index + 1 + offset, new)


def _attribute(node, name: str, default=None):
    return next((a.i for a in node.attribute if a.name == name), default)


def quantize_embedding_rows(model) -> int:
    """Store each large embedding table (a float initializer read by ``Gather`` only) as int8 rows
    with one fp32 scale per row: ``Gather(int8) -> Cast -> Mul(Gather(scales))``, standard ONNX
    operators. onnxruntime's weight-only quantizer takes Gather at 4 bits only. Returns how many."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    done = 0
    for name, init, nodes in _gathered_tables(graph):
        if init.dims[0] * init.dims[1] < MIN_TABLE:
            continue
        table = numpy_helper.to_array(init)
        scale = np.maximum(np.abs(table).max(axis=1, keepdims=True), 1e-12) / 127.0
        graph.initializer.remove(init)
        graph.initializer.extend([
            numpy_helper.from_array(np.round(table / scale).astype(np.int8), name=f"{name}.int8"),
            numpy_helper.from_array(scale.astype(np.float32), name=f"{name}.scale")])
        for node in nodes:
            out, ids = node.output[0], node.input[1]
            rows, scales, cast = (f"{out}.int8_rows", f"{out}.row_scales", f"{out}.rows")
            node.input[0], node.output[0] = f"{name}.int8", rows
            _insert_after(graph, node, [
                helper.make_node("Gather", [f"{name}.scale", ids], [scales], name=f"{node.name}_scales"),
                helper.make_node("Cast", [rows], [cast], to=TensorProto.FLOAT, name=f"{node.name}_cast"),
                helper.make_node("Mul", [cast, scales], [out], name=f"{node.name}_dequantize")])
        done += 1
    return done


def default_probe_prompts(tokenizer, model_type: str) -> list[str]:
    """Prompts the agreement check decodes: arithmetic expressions for our arithmetic decoder,
    GSM8K originals in the model's chat format for a language model."""
    if model_type == "mathkit_decoder":
        return list(ARITHMETIC_PROBES)
    from mathkit.data import load_math_dataset
    from mathkit.data.formatting import build_prompt

    rows = load_math_dataset("gsm8k_originals", n=PROBE_QUESTIONS, seed=0)
    return [build_prompt(tokenizer, row["problem"], style="gsm8k") for row in rows]


def agreement(reference, candidate, prompts: list[str], *, max_new_tokens: int = 48,
              batch_size: int = 8) -> dict:
    """How closely ``candidate`` follows ``reference`` (two :class:`OnnxCausalLM` s, or any
    models with ``greedy_rows`` and ``forced_argmax``) on ``prompts``: the share of the
    reference's greedy tokens that the candidate also predicts given the same prefix
    (``next_token_agreement``), and how many greedy completions are identical."""
    from mathkit.evaluation.generation import stop_token_ids

    tokenizer = reference.tokenizer
    old_side, tokenizer.padding_side = tokenizer.padding_side, "left"
    stop_ids = stop_token_ids(reference, tokenizer)
    same = total = identical = 0
    try:
        for start in range(0, len(prompts), batch_size):
            enc = tokenizer(prompts[start:start + batch_size], return_tensors="np", padding=True,
                            add_special_tokens=False)
            ids, mask = enc["input_ids"], enc["attention_mask"]
            ref, _ = reference.greedy_rows(ids, mask, max_new_tokens=max_new_tokens, stop_ids=stop_ids)
            forced = candidate.forced_argmax(ids, mask, ref)
            got, _ = candidate.greedy_rows(ids, mask, max_new_tokens=max_new_tokens, stop_ids=stop_ids)
            same += sum(a == b for r, f in zip(ref, forced) for a, b in zip(r, f))
            total += sum(len(r) for r in ref)
            identical += sum(r == g for r, g in zip(ref, got))
    finally:
        tokenizer.padding_side = old_side
    return {"next_token_agreement": round(same / total, 4) if total else None, "positions": total,
            "identical_greedy_rows": identical, "rows": len(prompts), "max_new_tokens": max_new_tokens}


def add_int8_variant(folder: str | Path, *, method: str = DEFAULT_METHOD, probe_prompts: list[str] | None = None,
                     threads: int | None = None) -> dict:
    """Quantize an export folder's fp32 graph into ``model.int8.onnx``, measure its agreement with
    fp32 on ``probe_prompts`` (default: :func:`default_probe_prompts`) and record both in the
    manifest under ``variants["int8"]``. Returns that entry."""
    from mathkit.inference.onnx_model import OnnxCausalLM

    folder = Path(folder)
    manifest = read_manifest(folder)
    target = folder / "model.int8.onnx"
    entry = {"file": target.name, **quantize_int8(folder / manifest["variants"]["fp32"]["file"], target,
                                                  method=method)}
    entry["bytes"] = file_bytes(target)
    entry["size_vs_fp32"] = round(entry["bytes"] / manifest["variants"]["fp32"]["bytes"], 4)
    manifest["variants"]["int8"] = {**entry, "quantization": method}
    write_manifest(folder, manifest)
    fp32 = OnnxCausalLM.from_path(folder, threads=threads, variant="fp32")
    int8 = OnnxCausalLM.from_path(folder, threads=threads, variant="int8")
    prompts = probe_prompts or default_probe_prompts(fp32.tokenizer, manifest["source"]["model_type"])
    entry["agreement_with_fp32"] = agreement(fp32, int8, prompts)
    manifest["variants"]["int8"] = {**entry, "quantization": method}
    write_manifest(folder, manifest)
    log.info("int8 %s: %.1f%% of fp32's size, next-token agreement %s", method, 100 * entry["size_vs_fp32"],
             entry["agreement_with_fp32"]["next_token_agreement"])
    return manifest["variants"]["int8"]
