"""ONNX export with the KV cache: the manifest and files an export writes, its int8 variant and
measured agreement, and the ``export`` command's one-line errors (tiny models only)."""

import json

import onnx
import pytest

from mathkit.cli import main
from mathkit.export.onnx_export import MANIFEST, OPSET, io_names
from tests.onnx_exports import decoder_export, llama_export

pytestmark = pytest.mark.usefixtures("one_thread")


def test_export_writes_graph_tokenizer_configs_and_manifest():
    from transformers import AutoConfig, AutoTokenizer

    checkpoint, folder = llama_export()
    manifest = json.loads((folder / MANIFEST).read_text())
    names_in, names_out = io_names(2)
    assert manifest["format"] == "onnx" and manifest["opset"] == OPSET == 23
    assert manifest["inputs"] == names_in and manifest["outputs"] == names_out
    assert manifest["kv_cache"] == {"layers": 2, "kv_heads": 2, "head_dim": 8}
    assert manifest["source"]["checkpoint"] == str(checkpoint) and manifest["source"]["model_type"] == "llama"
    fp32 = manifest["variants"]["fp32"]
    assert fp32["bytes"] == (folder / fp32["file"]).stat().st_size  # one file, no external data
    graph = onnx.load(str(folder / fp32["file"]))
    assert [i.name for i in graph.graph.input] == names_in
    assert [o.name for o in graph.graph.output] == names_out
    assert AutoTokenizer.from_pretrained(folder)("a b")["input_ids"] == \
        AutoTokenizer.from_pretrained(checkpoint)("a b")["input_ids"]
    assert AutoConfig.from_pretrained(folder).model_type == "llama"


def test_int8_variant_is_smaller_and_reports_its_agreement():
    _, folder = llama_export()
    manifest = json.loads((folder / MANIFEST).read_text())
    int8 = manifest["variants"]["int8"]
    assert int8["quantization"] == "weight_only" and (folder / int8["file"]).is_file()
    assert int8["bytes"] < manifest["variants"]["fp32"]["bytes"]
    agree = int8["agreement_with_fp32"]
    assert agree["rows"] == 8 and agree["positions"] > 0
    assert 0.0 <= agree["next_token_agreement"] <= 1.0
    assert 0 <= agree["identical_greedy_rows"] <= agree["rows"]


def test_arithmetic_export_keeps_its_side_files():
    _, folder = decoder_export()
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["source"]["model_type"] == "mathkit_decoder" and "int8" not in manifest["variants"]
    assert json.loads((folder / "arithmetic_format.json").read_text())["ops"] == ["+", "-", "*"]


def test_dynamic_int8_recipes_run(tmp_path):
    from mathkit.export.quantize import quantize_int8

    _, folder = llama_export()
    done = quantize_int8(folder / "model.onnx", tmp_path / "dynamic.onnx", method="dynamic_per_channel")
    assert done["method"] == "dynamic_per_channel" and (tmp_path / "dynamic.onnx").stat().st_size > 0


def _export_cli(capsys, *args):
    code = main(["export", *map(str, args)])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--format", "tflite"], "--format tflite: use one of onnx, gguf"),
    (["--format", "gguf", "--int8"], "--int8 applies to --format onnx"),
    (["--format", "onnx", "--quantization", "Q8_0"], "--quantization applies to --format gguf"),
    (["--format", "gguf", "--quantization", "Q2_K"], "use one of Q8_0, Q4_K_M"),
    (["--format", "onnx", "--int8-method", "dynamic"], "--int8-method needs --int8"),
])
def test_bad_options_are_one_line_errors(args, message, tmp_path, capsys):
    checkpoint, _ = llama_export()
    code, err = _export_cli(capsys, "--checkpoint", checkpoint, *args, "--output", tmp_path / "out")
    assert code == 2 and message in err and err.count("\n") == 1


def test_missing_checkpoint_and_used_output_are_one_line_errors(tmp_path, capsys):
    code, err = _export_cli(capsys, "--checkpoint", tmp_path / "nothing", "--format", "onnx",
                            "--output", tmp_path / "out")
    assert code == 2 and "no such model folder or offline alias" in err and err.count("\n") == 1
    checkpoint, folder = llama_export()
    code, err = _export_cli(capsys, "--checkpoint", checkpoint, "--format", "onnx", "--output", folder)
    assert code == 2 and "--overwrite" in err and err.count("\n") == 1
