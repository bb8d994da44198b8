"""Edge targets end to end on a tiny arithmetic decoder: exported (or an earlier export reused),
evaluated by the one evaluator beside torch, compared in the table, chart and sentences notebook
02 shows; llama.cpp targets skipped with the reason where llama-cpp-python is missing."""

import json
import shutil
from types import SimpleNamespace

import matplotlib
import pytest

from mathkit.errors import ParamsError
from mathkit.export import targets
from mathkit.export.targets import check_targets, export_targets
from mathkit.inference.exports_evaluation import evaluate_exports
from mathkit.reporting.edge_summary import edge_markdown, edge_row, edge_sentences, goal_text, plot_edge
from tests.onnx_exports import decoder_export

matplotlib.use("Agg")
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("value, message", [(["tflite"], r"unknown edge target\(s\) \['tflite'\]"),
                                            (["onnx_int8", "onnx_int8"], "edge targets repeat")])
def test_bad_targets_are_refused(value, message):
    with pytest.raises(ParamsError, match=message):
        check_targets(value)


@pytest.fixture
def earlier_export(tmp_path):
    checkpoint, folder = decoder_export()
    shutil.copytree(folder, tmp_path / "onnx")
    return checkpoint, tmp_path


def test_reuse_keeps_an_earlier_export_and_a_missing_llama_cpp_skips_gguf(earlier_export, monkeypatch):
    checkpoint, out = earlier_export
    monkeypatch.setattr(targets, "llama_cpp_missing", lambda: "llama-cpp-python is not installed")
    exports, skipped = export_targets(checkpoint, out, ["onnx_fp32", "gguf_q4_k_m"], reuse=True)
    assert [e.name for e in exports] == ["onnx_fp32"] and exports[0].export_seconds is None
    assert exports[0].file_bytes == (out / "onnx" / "model.onnx").stat().st_size
    assert skipped == {"gguf_q4_k_m": "llama-cpp-python is not installed"}


def test_reuse_writes_an_export_of_another_opset_anew(earlier_export):
    from mathkit.export.onnx_export import MANIFEST, OPSET

    checkpoint, out = earlier_export
    manifest = json.loads((out / "onnx" / MANIFEST).read_text())
    (out / "onnx" / MANIFEST).write_text(json.dumps({**manifest, "opset": OPSET - 5}))
    exports, _ = export_targets(checkpoint, out, ["onnx_fp32"], reuse=True)
    assert exports[0].export_seconds > 0 and json.loads((out / "onnx" / MANIFEST).read_text())["opset"] == OPSET


def test_without_reuse_the_export_is_written_anew(earlier_export):
    checkpoint, out = earlier_export
    stale = out / "onnx" / "stale.txt"
    stale.write_text("from an older checkpoint")
    exports, skipped = export_targets(checkpoint, out, ["onnx_fp32"])
    assert not stale.exists() and exports[0].export_seconds > 0 and not skipped


def test_exports_are_evaluated_and_compared_with_torch(earlier_export, tmp_path):
    from mathkit.data.arithmetic import generate_examples
    from mathkit.evaluation.arithmetic_scoring import ArithmeticScorer
    from mathkit.evaluation.evaluator import evaluate_model
    from mathkit.models import load

    checkpoint, out = earlier_export
    rows = generate_examples(8, max_digits=2, seed=5)
    kwargs = dict(scorer=ArithmeticScorer(token_accuracy=False), batch_size=1, max_new_tokens=8, progress=False)
    exports, _ = export_targets(checkpoint, out, ["onnx_fp32"], reuse=True)
    model, tokenizer = load(checkpoint, device="cpu")
    reference = evaluate_model(model, tokenizer, rows, **kwargs)
    (export, evaluation), = evaluate_exports(exports, rows, threads=1, records_dir=tmp_path / "records", **kwargs)
    assert (tmp_path / "records" / "edge_onnx_fp32.jsonl").is_file()
    torch_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    rows_out = [edge_row("torch fp32", reference, reference, file_bytes=torch_bytes, reference_bytes=torch_bytes,
                         batch_size=1),
                edge_row("onnx_fp32", evaluation, reference, file_bytes=export.file_bytes, reference_bytes=torch_bytes,
                         batch_size=1, export_seconds=export.export_seconds)]
    ref, onnx = rows_out
    # ONNX Runtime decodes torch's greedy tokens: every completion the same, nothing fixed or broken
    assert onnx["same_completions"] == onnx["n"] == 8 and onnx["accuracy"] == ref["accuracy"]
    assert onnx["paired"]["n_fixed"] == onnx["paired"]["n_broken"] == 0 and onnx["inside_reference_interval"]
    assert ref["speed_vs_reference"] == ref["size_vs_reference"] == 1.0
    assert onnx["size_vs_reference"] == pytest.approx(export.file_bytes / torch_bytes, abs=1e-4)
    table = edge_markdown(rows_out)
    assert table.count("\n") == 3 and "| onnx_fp32 |" in table and "8/8" in table
    goal = goal_text(onnx)
    assert goal.startswith("onnx_fp32: ") and goal.endswith("goal not met")  # fp32 is not 4x smaller
    (sentence,) = edge_sentences(rows_out, "the test additions")
    assert "8 of 8 completions identical" in sentence and "0 fixed, 0 broken" in sentence
    fig = plot_edge(rows_out, title="tiny")
    assert len(fig.axes) == 2


def test_goal_is_met_only_when_speed_size_and_accuracy_all_hold():
    row = {"name": "x", "speed_vs_reference": 2.1, "size_vs_reference": 0.2, "inside_reference_interval": True}
    assert goal_text(row).endswith("goal met")
    for change in ({"speed_vs_reference": 1.9}, {"size_vs_reference": 0.3}, {"inside_reference_interval": False}):
        assert goal_text({**row, **change}).endswith("goal not met")


def test_int8_asked_alone_counts_the_fp32_export_it_needed(earlier_export, monkeypatch):
    checkpoint, out = earlier_export
    clock = iter(range(0, 1000, 10))  # every perf_counter call advances 10 s
    monkeypatch.setattr(targets, "time", SimpleNamespace(perf_counter=lambda: next(clock)))  # this module's only
    exports, _ = export_targets(checkpoint, out, ["onnx_int8"])
    assert [e.name for e in exports] == ["onnx_int8"] and exports[0].export_seconds == 20  # export + quantize
    exports, _ = export_targets(checkpoint, out, ["onnx_fp32", "onnx_int8"])
    assert [e.export_seconds for e in exports] == [10, 10]  # each its own step
