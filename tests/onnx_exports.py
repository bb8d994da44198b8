"""Tiny models exported to ONNX once per test process, shared by the ONNX test files.

A dynamo export takes ~10-20 s even for a tiny model (tracing, not size), so the exports are
cached per process instead of per module: a tiny random Llama (through the CLI, with its int8
variant) and a tiny arithmetic ``mathkit_decoder``, each next to the torch checkpoint it came from.
"""

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import torch

from mathkit.models import build_decoder, save
from mathkit.models.char_tokenizer import build_char_tokenizer
from tests.test_evaluation_evaluator import tiny_llama, tiny_tokenizer

ARITHMETIC_OPS = ["+", "-", "*"]


@functools.cache
def _workdir() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="mathkit-onnx-tests-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


@functools.cache
def llama_export() -> tuple[Path, Path]:
    """``(checkpoint, export folder)`` of a tiny random Llama, exported with ``--int8``."""
    from mathkit.cli import main

    checkpoint, out = _workdir() / "llama", _workdir() / "llama_onnx"
    tok = tiny_tokenizer()
    save(tiny_llama(tok, hidden=32), tok, checkpoint)
    assert main(["export", "--checkpoint", str(checkpoint), "--format", "onnx", "--int8",
                 "--output", str(out)]) == 0
    return checkpoint, out


@functools.cache
def decoder_export() -> tuple[Path, Path]:
    """``(checkpoint, export folder)`` of a tiny arithmetic decoder (random, with wide weights so
    that its greedy tokens vary) and the side file notebook 01 writes."""
    from mathkit.export.onnx_export import export_onnx

    checkpoint, out = _workdir() / "decoder", _workdir() / "decoder_onnx"
    tok = build_char_tokenizer()
    torch.manual_seed(0)
    model = build_decoder("small", tok, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                          intermediate_size=64, initializer_range=0.5)
    save(model.eval(), tok, checkpoint, extra_configs={"arithmetic_format": {"ops": ARITHMETIC_OPS}})
    export_onnx(checkpoint, out)
    return checkpoint, out
