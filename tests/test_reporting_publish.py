"""Cleaning an executed notebook for commit, and HTML that renders math without the network."""

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from mathkit.reporting.publish import (clean_notebook, clean_stream_text, markdown_math_to_mathml,
                                       merge_parameters_cells, render_html)

PAIRS = [("/work/main", ""), ("/root", "~")]


def test_clean_stream_text_drops_bars_and_warnings_keeps_messages():
    text = ("Map:   0%|          | 0/20 [00:00<?, ? examples/s]\rMap: 100%|██████████| 20/20 [00:00<00:00]\n"
            "/x/site-packages/trl/trainer.py:12: FutureWarning: `tokenizer` is deprecated\n"
            "  warnings.warn(\n"
            "WARNING mathkit.data: 3 problems had no answer\n"
            "Failed to load CPU gemm_4bit_forward from kernels-community: No module named 'kernels'\n"
            " 50%|#####     | 29/58 [01:00<01:00,  2.1s/it]\n")
    assert clean_stream_text(text) == "WARNING mathkit.data: 3 problems had no answer\n"
    assert clean_stream_text("a\rb\n") == "b\n"  # what the terminal showed last


def test_merge_parameters_cells_keeps_one_cell_with_the_injected_values():
    nb = new_notebook(cells=[new_code_cell("seed = 0\nn = 4", metadata={"tags": ["parameters"]}),
                             new_code_cell("# Parameters\nseed = 3\nn = 500\n",
                                           metadata={"tags": ["injected-parameters"]}),
                             new_code_cell("print(seed)")])
    merge_parameters_cells(nb)
    assert len(nb.cells) == 2
    assert nb.cells[0].metadata["tags"] == ["injected-parameters", "parameters"]
    assert "seed = 3\nn = 500" in nb.cells[0].source and "seed = 0" not in nb.cells[0].source
    merged = nbformat.from_dict(nb)
    merge_parameters_cells(nb)  # a report cleaned again (e.g. after a new noise pattern): unchanged
    assert nb == merged
    plain = new_notebook(cells=[new_code_cell("seed = 0", metadata={"tags": ["parameters"]})])
    merge_parameters_cells(plain)  # not run by papermill: untouched
    assert plain.cells[0].source == "seed = 0"


def test_llama_cpp_quantizer_and_torch_onnx_notices_are_dropped_their_summary_kept():
    text = ("W1202 03:18:16.674000 27151 torch/onnx/_internal/exporter/_registration.py:107] torchvision is "
            "not installed. Skipping torchvision::nms\n"
            "warning: blk.0.attn_k.weight                  - ncols    576 not divisible by 256 (required for type "
            "   q4_K) \n"
            "-> falling back to    q5_0\n"
            "llama_model_quantize_impl: WARNING: 180 of 272 tensor(s) required fallback quantization\n")
    assert clean_stream_text(text) == ("llama_model_quantize_impl: WARNING: 180 of 272 tensor(s) required "
                                       "fallback quantization\n")


def test_clean_notebook_makes_paths_relative_everywhere():
    nb = new_notebook(cells=[new_code_cell("out = '/work/main/reports/00'", outputs=[
        new_output("stream", name="stdout", text="wrote /work/main/reports/00/results.json\n"),
        new_output("stream", name="stderr", text="  3%|▎         | 1/30\r"),
        new_output("display_data", data={"text/plain": "PosixPath('/root/.cache/x')", "image/png": "AAAA"}),
        new_output("error", ename="E", evalue="in /work/main/x.py", traceback=["File /work/main/x.py"])])])
    nb.metadata["papermill"] = {"input_path": "/work/main/reports/.staging/00.input.ipynb",
                                "parameters": {"output_dir": "/work/main/reports/00", "n": 3}}
    clean_notebook(nb, PAIRS)
    outputs = nb.cells[0].outputs
    assert len(outputs) == 3  # the progress-only stderr is gone
    assert outputs[0].text == "wrote reports/00/results.json\n"
    assert outputs[1].data["text/plain"] == "PosixPath('~/.cache/x')" and outputs[1].data["image/png"] == "AAAA"
    assert outputs[2].traceback == ["File x.py"] and outputs[2].evalue == "in x.py"
    assert nb.cells[0].source == "out = 'reports/00'"
    assert nb.metadata["papermill"] == {"input_path": "reports/.staging/00.input.ipynb",
                                       "parameters": {"output_dir": "reports/00", "n": 3}}


def test_math_to_mathml_leaves_money_and_code_alone():
    text = markdown_math_to_mathml("Sum $\\sum_{i=1}^n i^3$ costs $5 and $10; `$x$` in code; $$\\frac{1}{2}$$")
    assert text.count("<math") == 2 and 'display="block"' in text
    assert "costs $5 and $10" in text and "`$x$`" in text
    assert markdown_math_to_mathml("```\n$a$\n```") == "```\n$a$\n```"
    assert markdown_math_to_mathml("<pre>is $\\boxed{4}$.</pre>") == "<pre>is $\\boxed{4}$.</pre>"
    assert markdown_math_to_mathml("bad $\\frac{$ stays") == "bad $\\frac{$ stays"  # unparsable TeX stays


def test_render_html_needs_no_network(tmp_path):
    nb = new_notebook(cells=[new_markdown_cell("Gold: $\\frac{n(n+1)}{2}$"),
                             new_code_cell("1", outputs=[new_output("display_data", data={
                                 "text/markdown": "extracted $x^2$ from /work/main/reports"})])])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    html = render_html(nbformat.from_dict(nb), tmp_path / "page.html", PAIRS).read_text()
    assert html.count("<math") == 2
    assert "cdnjs" not in html and 'src="http' not in html and "mermaid.esm" not in html
    assert "/work/main" not in html
