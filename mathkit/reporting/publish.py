"""From an executed notebook to the committed report: clean outputs and an HTML page that works offline.

What papermill writes is not what a reader should get: tqdm redraws its bar into stderr hundreds of
times (rows of pink lines in the HTML), libraries print warnings, every path names the folder of
the machine that ran it, the notebook's small defaults stand next to the values really injected,
and the HTML fetches MathJax from a CDN. :func:`clean_notebook` fixes the notebook;
:func:`render_html` writes the page with math as MathML, which browsers draw without any script.
"""

from __future__ import annotations

import copy
import logging
import re
from pathlib import Path

from mathkit.errors import MathkitError
from mathkit.reporting.paths import portable, strip_prefixes

log = logging.getLogger(__name__)

INJECTED_TAG = "injected-parameters"
PARAMETERS_TAG = "parameters"
PARAMETERS_NOTE = ("# Parameters of this run, as injected by `python -m mathkit run` (the notebook's own\n"
                   "# defaults, small values for tests, are in notebooks/ and were not used).\n")

# tqdm and Hugging Face progress bars: "45%|████▌     | 9/20 [00:03<00:04, 2.6it/s]"
PROGRESS_LINE = re.compile(r"\d+%\|.*\||\|[#█▏▎▍▌▋▊▉ ]+\||\d+/\d+ \[\d+:\d+(:\d+)?<")
# warnings.warn output: "path/to/file.py:123: FutureWarning: message", then the indented source line
WARNING_HEADER = re.compile(r"^\S.*:\d+: \w*Warning: ")
NOISE_LINES = (re.compile(r"Failed to load CPU gemm_4bit_forward from kernels-community"),
               # llama.cpp's quantizer, per tensor, before its one-line summary (K-quant fallbacks)
               re.compile(r"^warning: blk\.\S+ +- ncols +\d+ not divisible by \d+"),
               re.compile(r"^-> falling back to +\w+\s*$"),
               # torch.onnx's exporter, once per process: torchvision's operators it cannot register
               re.compile(r"torchvision is not installed\. Skipping torchvision::"))


def _final_state(line: str) -> str:
    """What a terminal shows for a line rewritten with carriage returns: the last version."""
    return line.rsplit("\r", 1)[-1] if "\r" in line else line


def clean_stream_text(text: str) -> str:
    """``text`` without progress-bar redraws, ``warnings.warn`` output and known harmless notices."""
    kept: list[str] = []
    in_warning = False
    for raw in text.replace("\r\n", "\n").split("\n"):
        line = _final_state(raw)
        if in_warning and (line.startswith((" ", "\t")) or not line.strip()):
            continue  # the source line that warnings.warn prints under its header
        in_warning = bool(WARNING_HEADER.match(line))
        if in_warning or PROGRESS_LINE.search(line) or any(p.search(line) for p in NOISE_LINES):
            continue
        kept.append(line)
    return "\n".join(kept)


def _clean_output(output: dict, pairs) -> dict | None:
    kind = output.get("output_type")
    if kind == "stream":
        text = strip_prefixes(clean_stream_text(output["text"]), pairs)
        if not text.strip():
            return None
        output["text"] = text if text.endswith("\n") else text + "\n"
    elif kind in ("display_data", "execute_result"):
        output["data"] = {k: (strip_prefixes(v, pairs) if isinstance(v, str) and not k.startswith("image/")
                              else v) for k, v in output.get("data", {}).items()}
    elif kind == "error":
        output["evalue"] = strip_prefixes(output.get("evalue", ""), pairs)
        output["traceback"] = [strip_prefixes(t, pairs) for t in output.get("traceback", [])]
    return output


def merge_parameters_cells(nb) -> None:
    """Keep one parameters cell: the defaults cell shows the injected values; the injected one goes.

    papermill leaves the notebook's defaults (tagged ``parameters``) above the values it injected;
    a reader would take the defaults for the run's settings.
    """
    cells = nb.cells
    injected = next((i for i, c in enumerate(cells) if INJECTED_TAG in c.metadata.get("tags", [])), None)
    defaults = next((i for i, c in enumerate(cells) if PARAMETERS_TAG in c.metadata.get("tags", [])
                     and INJECTED_TAG not in c.metadata.get("tags", [])), None)
    if injected is None:
        return
    source = cells[injected].source
    if source.startswith(PARAMETERS_NOTE):  # a report cleaned before: nothing left to merge
        return
    body = source.split("\n", 1)[1] if source.startswith("# Parameters\n") else source
    cells[injected].source = PARAMETERS_NOTE + body
    if defaults is not None:
        cells[injected].metadata["tags"] = sorted({*cells[injected].metadata.get("tags", []), PARAMETERS_TAG})
        del cells[defaults]


def clean_notebook(nb, pairs):
    """The executed notebook ``nb`` (nbformat node, changed in place and returned), ready to commit."""
    merge_parameters_cells(nb)
    for cell in nb.cells:
        cell.source = strip_prefixes(cell.source, pairs)
        if cell.cell_type == "code":
            cell.outputs = [o for o in (_clean_output(o, pairs) for o in cell.outputs) if o is not None]
    if "papermill" in nb.metadata:
        nb.metadata["papermill"] = portable(dict(nb.metadata["papermill"]), pairs)
    return nb


# ---- HTML -----------------------------------------------------------------------------------

# code (fenced, inline, or raw <pre>/<code> HTML) is shown as written, as MathJax would leave it
CODE_SPANS = re.compile(r"(```.*?```|~~~.*?~~~|`[^`\n]*`|<pre\b.*?</pre>|<code\b.*?</code>)", re.DOTALL)
DISPLAY_MATH = re.compile(r"\$\$(.+?)\$\$|\\\[(.+?)\\\]", re.DOTALL)
INLINE_MATH = re.compile(r"\\\((.+?)\\\)|(?<![\\$\w])\$(?=\S)([^$\n]+?)(?<=\S)\$(?!\d)")
REMOTE_SCRIPT = re.compile(r'<script[^>]*\bsrc="https?://[^"]*"[^>]*>\s*</script>\s*')
MATHJAX_CONFIG = re.compile(r"<!-- Load mathjax -->.*?<!-- End of mathjax configuration -->", re.DOTALL)
# nbconvert's loader for mermaid diagrams (imported from a CDN; our reports draw none)
MERMAID_LOADER = re.compile(r'<script type="module">(?:(?!</script>).)*?mermaid(?:(?!</script>).)*</script>\s*',
                            re.DOTALL)


def _mathml(tex: str, display: str) -> str | None:
    from latex2mathml.converter import convert

    try:
        return convert(tex.strip(), display=display)
    except Exception:  # noqa: BLE001 - latex2mathml raises many kinds; unknown TeX stays as text
        return None


def _replace_math(match: re.Match, display: str) -> str:
    tex = next(g for g in match.groups() if g is not None)
    return _mathml(tex, display) or match.group(0)


def markdown_math_to_mathml(text: str) -> str:
    """``$...$``, ``$$...$$``, ``\\(...\\)`` and ``\\[...\\]`` outside code as MathML.

    Dollar signs follow pandoc's rule (no space inside the delimiters, no digit right after the
    closing one), so "$5 and $10" stays money.
    """
    parts = CODE_SPANS.split(text)
    for i in range(0, len(parts), 2):  # even parts are outside code
        part = DISPLAY_MATH.sub(lambda m: _replace_math(m, "block"), parts[i])
        parts[i] = INLINE_MATH.sub(lambda m: _replace_math(m, "inline"), part)
    return "".join(parts)


def _with_mathml(nb):
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = markdown_math_to_mathml(cell.source)
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if isinstance(data.get("text/markdown"), str):
                data["text/markdown"] = markdown_math_to_mathml(data["text/markdown"])
    return nb


def render_html(nb, html_path: str | Path, pairs) -> Path:
    """Write ``nb`` as a standalone HTML page that needs no network: no CDN script, math as MathML."""
    try:
        from nbconvert import HTMLExporter
    except ImportError as err:  # pragma: no cover - nbconvert is a dependency
        raise MathkitError("rendering HTML needs nbconvert: pip install -r requirements.txt") from err
    try:
        import latex2mathml  # noqa: F401

        nb = _with_mathml(nb)
    except ImportError:
        log.warning("latex2mathml is not installed (pip install -r requirements.txt): math in %s stays "
                    "as TeX source", Path(html_path).name)
    body, _ = HTMLExporter(mathjax_url="", require_js_url="").from_notebook_node(nb)
    for pattern in (MATHJAX_CONFIG, MERMAID_LOADER, REMOTE_SCRIPT):
        body = pattern.sub("", body)
    html_path = Path(html_path)
    html_path.write_text(strip_prefixes(body, pairs), encoding="utf-8")
    return html_path
