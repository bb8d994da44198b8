"""int8 recipes on hand-built ONNX graphs: a tied embedding table is stored once, as the output
layer's int8 blocks, and reading it from there gives the table within one quantization step."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from mathkit.export.quantize import BLOCK_SIZE, quantize_int8

VOCAB, WIDTH = 96, 2 * BLOCK_SIZE


def _tied_graph(path, *, tied=True, seed=0):
    """ids -> Gather(table) -> hidden; logits = hidden @ Transpose(table) (or an untied matrix)."""
    rng = np.random.default_rng(seed)
    table = rng.normal(size=(VOCAB, WIDTH)).astype(np.float32)
    inits = [numpy_helper.from_array(table, "table")]
    nodes = [helper.make_node("Gather", ["table", "ids"], ["hidden"], name="embed")]
    if tied:
        nodes.append(helper.make_node("Transpose", ["table"], ["table_t"], perm=[1, 0], name="tie"))
    else:
        inits.append(numpy_helper.from_array(rng.normal(size=(WIDTH, VOCAB)).astype(np.float32), "table_t"))
    nodes.append(helper.make_node("MatMul", ["hidden", "table_t"], ["logits"], name="head"))
    graph = helper.make_graph(nodes, "tied", [helper.make_tensor_value_info("ids", TensorProto.INT64, ["b", "s"])],
                              [helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["b", "s", WIDTH]),
                               helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["b", "s", VOCAB])],
                              inits)
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    return table


def _run(path, ids):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["hidden", "logits"], {"ids": ids})


def test_a_tied_table_is_stored_once_and_read_from_the_output_layers_blocks(tmp_path):
    table = _tied_graph(tmp_path / "fp32.onnx")
    done = quantize_int8(tmp_path / "fp32.onnx", tmp_path / "int8.onnx")
    assert done["folded_transposes"] == 1 and done["shared_tied_tables"] == 1 and done["embedding_tables"] == 0
    model = onnx.load(str(tmp_path / "int8.onnx"))
    float_tables = [i.name for i in model.graph.initializer if i.data_type == TensorProto.FLOAT and len(i.dims) == 2
                    and i.dims[0] * i.dims[1] >= VOCAB * WIDTH / 2]
    assert float_tables == []  # neither the table nor its transpose is left in fp32
    (head,) = [n for n in model.graph.node if n.op_type == "MatMulNBits"]
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    blocks, scales = inits[head.input[1]], inits[head.input[2]].reshape(VOCAB, -1)
    dequantized = ((blocks.astype(np.float32) - 128) * scales[:, :, None]).reshape(VOCAB, WIDTH)

    ids = np.array([[0, 5, 95], [7, 7, 40]], dtype=np.int64)
    hidden, logits = _run(tmp_path / "int8.onnx", ids)
    assert hidden.shape == (2, 3, WIDTH) and logits.shape == (2, 3, VOCAB)
    np.testing.assert_array_equal(hidden, dequantized[ids])  # the output layer's own int8 weights
    step = np.abs(scales).max()
    assert np.abs(hidden - table[ids]).max() <= 1.001 * step
    fp32_hidden, fp32_logits = _run(tmp_path / "fp32.onnx", ids)
    np.testing.assert_array_equal(fp32_hidden, table[ids])
    assert (logits.argmax(-1) == fp32_logits.argmax(-1)).all()


def test_an_untied_table_is_not_shared_with_an_output_layer_of_its_shape(tmp_path):
    """Matched by content: a quantized output layer of the table's shape but other values is left alone."""
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    from mathkit.export import quantize

    _tied_graph(tmp_path / "fp32.onnx", tied=False)
    model = onnx.load(str(tmp_path / "fp32.onnx"))

    quantizer = MatMulNBitsQuantizer(model, bits=8, block_size=BLOCK_SIZE, is_symmetric=True,
                                     op_types_to_quantize=("MatMul",))
    quantizer.process()
    assert quantize.share_tied_tables(quantizer.model.model) == 0


@pytest.mark.parametrize("method", ["dynamic", "dynamic_per_channel"])
def test_dynamic_recipes_leave_the_table_alone(tmp_path, method):
    _tied_graph(tmp_path / "fp32.onnx")
    done = quantize_int8(tmp_path / "fp32.onnx", tmp_path / "int8.onnx", method=method)
    assert done["method"] == method and "shared_tied_tables" not in done
    hidden, _ = _run(tmp_path / "int8.onnx", np.zeros((1, 2), np.int64))
    assert hidden.shape == (1, 2, WIDTH)


def test_an_untied_table_is_stored_as_int8_rows(tmp_path, monkeypatch):
    from mathkit.export import quantize

    monkeypatch.setattr(quantize, "MIN_TABLE", 0)  # the test's table is small
    table = _tied_graph(tmp_path / "fp32.onnx", tied=False)
    done = quantize_int8(tmp_path / "fp32.onnx", tmp_path / "int8.onnx")
    assert done["shared_tied_tables"] == 0 and done["embedding_tables"] == 1
    ids = np.array([[0, 5, 95]], dtype=np.int64)
    hidden, _ = _run(tmp_path / "int8.onnx", ids)
    step = np.abs(table[ids]).max(axis=-1, keepdims=True) / 127.0  # one scale per row
    assert (np.abs(hidden - table[ids]) <= 0.501 * step).all() and not np.array_equal(hidden, table[ids])
