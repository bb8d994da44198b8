"""A GGUF model run by llama.cpp (``llama_cpp``) behind mathkit's "external" decoder contract.

:func:`mathkit.evaluation.generation.generate_batched` tokenizes prompts with the HF tokenizer,
left-pads them and hands the batch to :meth:`LlamaCppModel.greedy_rows`, which strips each row's
padding and feeds llama.cpp those token ids (never the text, so the prompt llama.cpp sees is the
one torch would see, whatever llama.cpp's own tokenizer would make of it). Decoding is greedy:
the argmax of llama.cpp's logits at each step (numpy's argmax, like torch's, takes the first of
equal maxima), with no sampler, penalty or grammar in between.

One prompt at a time: a row is evaluated, then decoded token by token with the KV cache, and the
cache is cleared before the next row. llama-cpp-python's high-level ``Llama`` holds one sequence;
batched decoding would need its low-level batch API and per-sequence cache bookkeeping. One
prompt at a time is what an edge device runs, and llama.cpp is fast at it (~150 tokens/s for
SmolLM2-135M Q4_1 on 2 cores against ~15 for torch eager).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import torch

from mathkit.errors import MathkitError, ParamsError
from mathkit.evaluation.decoding import greedy_loop
from mathkit.export.gguf_export import MANIFEST

log = logging.getLogger(__name__)

DEFAULT_CONTEXT = 4096  # tokens of KV cache: a prompt and its completion must fit


def resolve_gguf(path) -> Path:
    """The ``.gguf`` file that ``path`` means: the file itself, or an export folder's (its manifest's
    ``file``, else its only ``.gguf``)."""
    path = Path(path).expanduser()
    if path.is_file():
        if path.suffix != ".gguf":
            raise ParamsError(f"{path} is not a .gguf file: pass a GGUF file or a folder written by "
                              "`mathkit export --format gguf`")
        return path
    if not path.is_dir():
        raise ParamsError(f"{path} does not exist: pass a GGUF file or a folder written by "
                          "`mathkit export --format gguf`")
    manifest = path / MANIFEST
    if manifest.is_file():
        info = json.loads(manifest.read_text())
        if info.get("format") != "gguf":
            raise ParamsError(f"{manifest} describes a {info.get('format')!r} export, not a GGUF one: "
                              "choose the backend that matches it")
        file = path / info["file"]
        if not file.is_file():
            raise ParamsError(f"{manifest} names {info['file']}, which is not in {path}: export again")
        return file
    found = sorted(path.glob("*.gguf"))
    if len(found) != 1:
        raise ParamsError(f"{path} holds {len(found)} .gguf files and no {MANIFEST}: pass the file itself")
    return found[0]


def _hf_tokenizer(gguf: Path):
    """The HF tokenizer saved beside the export, else the one transformers reads from the GGUF."""
    from transformers import AutoTokenizer

    folder = gguf.parent
    if any((folder / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json")):
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
    else:
        log.info("no tokenizer beside %s: reading the one inside the GGUF", gguf.name)
        tokenizer = AutoTokenizer.from_pretrained(str(folder), gguf_file=gguf.name)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _context_length(gguf: Path) -> int | None:
    """The context the model was trained for (``<arch>.context_length`` in the GGUF header)."""
    from gguf import GGUFReader

    fields = GGUFReader(str(gguf)).fields
    arch = fields.get("general.architecture")
    length = fields.get(f"{arch.contents()}.context_length") if arch is not None else None
    return int(length.contents()) if length is not None else None


def _generation_config(gguf: Path, llama):
    """Stop tokens: the saved generation config, else the tokens llama.cpp itself ends a reply at
    (EOS and end of turn; for SmolLM2 that adds ``<|endoftext|>`` to the HF tokenizer's EOS)."""
    from transformers import GenerationConfig

    if (gguf.parent / "generation_config.json").is_file():
        return GenerationConfig.from_pretrained(str(gguf.parent))
    import llama_cpp

    vocab = llama_cpp.llama_model_get_vocab(llama.model)
    ids = [i for i in (llama.token_eos(), llama_cpp.llama_vocab_eot(vocab)) if i >= 0]
    return GenerationConfig(eos_token_id=list(dict.fromkeys(ids)))


class LlamaCppModel:
    """A GGUF model decoded by llama.cpp, usable wherever mathkit evaluates a model
    (``generate_batched(..., decoder="auto")`` picks the external decoder for it)."""

    device = torch.device("cpu")

    def __init__(self, llama, tokenizer, generation_config, path: Path, manifest: dict | None = None):
        self.llama = llama
        self.tokenizer = tokenizer
        self.generation_config = generation_config
        self.path = path
        self.manifest = manifest or {}
        self.name_or_path = str(path)

    @classmethod
    def from_path(cls, path, threads: int | None = None, n_ctx: int | None = None) -> LlamaCppModel:
        """Load a ``.gguf`` file or an export folder. ``threads``: llama.cpp's compute threads
        (default: the cores this process may use); ``n_ctx``: KV-cache length in tokens, prompt
        and completion together (default: the training context, at most 4096)."""
        try:
            from llama_cpp import Llama
        except ImportError:
            raise MathkitError("the llama.cpp backend needs llama-cpp-python: `pip install 'mathkit[edge]'` "
                               "(pip builds llama.cpp from source in ~5 minutes)") from None
        gguf = resolve_gguf(path)
        threads = threads or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
        if n_ctx is None:  # no longer than the model was trained for (llama.cpp warns beyond)
            n_ctx = min(DEFAULT_CONTEXT, _context_length(gguf) or DEFAULT_CONTEXT)
        try:
            llama = Llama(model_path=str(gguf), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads,
                          n_batch=512, logits_all=False, verbose=False)
        except ValueError as err:  # llama-cpp-python's "Failed to load model from file"
            raise MathkitError(f"llama.cpp could not load {gguf} ({err}): check that it is a whole GGUF file "
                               "of an architecture this llama-cpp-python runs, or export it again") from err
        manifest_file = gguf.parent / MANIFEST
        manifest = json.loads(manifest_file.read_text()) if manifest_file.is_file() else None
        log.info("loaded %s in llama.cpp (%d threads, context %d)", gguf, threads, llama.n_ctx())
        return cls(llama, _hf_tokenizer(gguf), _generation_config(gguf, llama), gguf, manifest)

    @property
    def quantization(self) -> str | None:
        return self.manifest.get("quantization")

    def _last_logits(self) -> np.ndarray:
        """The logits of the last token evaluated, read in place: ``Llama.eval`` without
        ``logits_all`` no longer copies them into ``Llama.scores``."""
        import llama_cpp

        pointer = llama_cpp.llama_get_logits_ith(self.llama.ctx, -1)
        return np.ctypeslib.as_array(pointer, shape=(self.llama.n_vocab(),))

    def greedy_row(self, prompt: list[int], *, max_new_tokens: int, stop_ids, stopper=None) -> list[int]:
        """Greedy tokens after ``prompt`` (token ids), up to and including a stop token, until
        ``stopper.stopped`` says the row is over, or ``max_new_tokens``."""
        if not prompt:
            raise ParamsError("an empty prompt: llama.cpp needs at least one token to start from")
        if len(prompt) + max_new_tokens > self.llama.n_ctx():
            raise ParamsError(f"{len(prompt)} prompt tokens + {max_new_tokens} new tokens exceed llama.cpp's "
                              f"context of {self.llama.n_ctx()}: load with a larger n_ctx")
        self.llama.reset()  # n_tokens back to 0; the next eval overwrites the cache from position 0
        self.llama.eval(prompt)

        def advance(feed: list[int], keep) -> list[int]:  # one row: it never shrinks, it ends
            self.llama.eval(feed)
            return [int(np.argmax(self._last_logits()))]

        (generated,), _ = greedy_loop([int(np.argmax(self._last_logits()))], advance, max_new_tokens=max_new_tokens,
                                      stop_ids=stop_ids, stopper=stopper)
        return generated

    def greedy_rows(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *, max_new_tokens: int,
                    stop_ids, stopper=None) -> tuple[list[list[int]], int]:
        """The external decoder contract (mathkit.evaluation.generation): each left-padded row
        decoded on its own; slots are the decode steps after each prefill (no padding waste)."""
        rows = []
        for ids, mask in zip(input_ids.tolist(), attention_mask.tolist()):
            prompt = [t for t, m in zip(ids, mask) if m]
            rows.append(self.greedy_row(prompt, max_new_tokens=max_new_tokens, stop_ids=stop_ids,
                                        stopper=stopper))
        return rows, sum(max(0, len(r) - 1) for r in rows)

    def close(self) -> None:
        """Free llama.cpp's model and context now (left to ``Llama.__del__`` at interpreter exit,
        llama-cpp-python 0.3.36 prints an ignored TypeError)."""
        self.llama.close()

    def __repr__(self) -> str:
        return f"LlamaCppModel({self.path.name}, quantization={self.quantization})"
