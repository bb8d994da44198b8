"""An ONNX export (:mod:`mathkit.export.onnx_export`) decoded by ONNX Runtime, behind mathkit's evaluator.

:class:`OnnxCausalLM` is an "external" model for :mod:`mathkit.evaluation.generation`: it has a
``device``, a ``generation_config`` (its stop tokens), a ``config`` and a ``tokenizer``, and
``greedy_rows`` decodes a left-padded batch the way
:func:`~mathkit.evaluation.decoding.greedy_compacting` does: positions from the mask, the KV cache
fed back as the next step's past, the argmax of the last logits, and finished rows leaving the
batch (their cache rows dropped). So ``evaluate_model``, ``solve`` and the benchmarks run it
unchanged. The loop is ours because ONNX Runtime has no ``generate``; onnxruntime-genai would
bring one, but it neither takes our ``mathkit_decoder`` nor stops on mathkit's stop rules.

The graph returns the last position's logits only (a batch of 100 prompts of 200 tokens would
otherwise carry 3.9 GB of SmolLM2 logits out of every prefill), so it does not serve the
arithmetic scorer's teacher-forced token accuracy; that metric stays with the torch model.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from mathkit.errors import MathkitError
from mathkit.evaluation.decoding import greedy_loop
from mathkit.export.onnx_export import read_manifest

log = logging.getLogger(__name__)


class OnnxCausalLM:
    """An ONNX Runtime session over an export folder; see the module doc for the contract."""

    device = torch.device("cpu")

    def __init__(self, session, *, folder: Path, manifest: dict, variant: str, tokenizer=None,
                 config=None, generation_config=None):
        self.session, self.folder, self.manifest, self.variant = session, Path(folder), manifest, variant
        self.tokenizer, self.config, self.generation_config = tokenizer, config, generation_config
        cache = manifest["kv_cache"]
        self.n_layers, self.kv_heads, self.head_dim = cache["layers"], cache["kv_heads"], cache["head_dim"]
        self.past_names = manifest["inputs"][3:]
        self.name_or_path = str(folder)

    @classmethod
    def from_path(cls, path, *, threads: int | None = None, variant: str | None = None) -> "OnnxCausalLM":
        """Open an export folder (or one ``.onnx`` file inside it). ``variant``: ``"fp32"`` (default)
        or ``"int8"``, a name of the manifest's ``variants``. ``threads``: ONNX Runtime's intra-op
        threads (None: its default, one per core)."""
        import onnxruntime as ort
        from transformers import AutoConfig, AutoTokenizer, GenerationConfig

        import mathkit.models  # noqa: F401  (registers mathkit_decoder with AutoConfig)

        path = Path(path).expanduser()
        if not path.exists():
            raise MathkitError(f"no ONNX export at {path}: write one with `python -m mathkit export "
                               "--format onnx --checkpoint ... --output DIR`")
        folder = path.parent if path.is_file() else path
        manifest = read_manifest(folder)
        if manifest.get("format") != "onnx":
            raise MathkitError(f"{folder} holds a {manifest.get('format')} export, not an ONNX one: use the "
                               "matching backend (llama_cpp for gguf)")
        variants = manifest.get("variants", {})
        if path.is_file():
            variant = next((k for k, v in variants.items() if v["file"] == path.name), path.stem)
            graph = path
        else:
            variant = variant or "fp32"
            if variant not in variants:
                raise MathkitError(f"{folder} has no {variant!r} variant (it has {sorted(variants)}); "
                                   "export with --int8 for the int8 one")
            graph = folder / variants[variant]["file"]
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
        generation_config = (GenerationConfig.from_pretrained(str(folder))
                             if (folder / "generation_config.json").is_file() else None)
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        log.info("ONNX Runtime session on %s (%s)", graph, variant)
        return cls(session, folder=folder, manifest=manifest, variant=variant, tokenizer=tokenizer,
                   config=AutoConfig.from_pretrained(str(folder)), generation_config=generation_config)

    @property
    def file_bytes(self) -> int:
        return int(self.manifest["variants"].get(self.variant, {}).get("bytes", 0))

    def _step(self, ids: np.ndarray, mask: np.ndarray, positions: np.ndarray,
              past: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        feeds = {"input_ids": ids, "attention_mask": mask, "position_ids": positions,
                 **dict(zip(self.past_names, past))}
        logits, *present = self.session.run(None, feeds)
        return logits[:, -1, :], present

    def _decode(self, input_ids, attention_mask, *, max_new_tokens: int, stop_ids=(), stopper=None,
                forced: list[list[int]] | None = None) -> tuple[list[list[int]], int]:
        """:func:`~mathkit.evaluation.decoding.greedy_loop` with this graph's steps: positions from
        the left-padded mask as ``generate`` computes them, the past tensors fed back, the rows that
        finished dropped from mask, positions and past alike."""
        ids = np.asarray(input_ids.cpu().numpy() if torch.is_tensor(input_ids) else input_ids, dtype=np.int64)
        mask = np.asarray(attention_mask.cpu().numpy() if torch.is_tensor(attention_mask) else attention_mask,
                          dtype=np.int64)
        positions = np.where(mask == 0, 1, mask.cumsum(-1) - 1)  # as generate computes them
        empty = np.zeros((ids.shape[0], self.kv_heads, 0, self.head_dim), dtype=np.float32)
        logits, past = self._step(ids, mask, positions, [empty] * (2 * self.n_layers))
        state = {"mask": mask, "next_pos": mask.sum(-1, keepdims=True), "past": past}

        def advance(feed: list[int], keep: list[int] | None) -> list[int]:
            if keep is not None:  # finished rows leave the batch, their cache rows too
                index = np.asarray(keep)
                state["mask"], state["next_pos"] = state["mask"][index], state["next_pos"][index]
                state["past"] = [p[index] for p in state["past"]]
            state["mask"] = np.concatenate([state["mask"], np.ones((len(feed), 1), dtype=np.int64)], axis=1)
            logits, state["past"] = self._step(np.asarray(feed, dtype=np.int64)[:, None], state["mask"],
                                               state["next_pos"], state["past"])
            state["next_pos"] = state["next_pos"] + 1
            return logits.argmax(-1).tolist()

        return greedy_loop(logits.argmax(-1).tolist(), advance, max_new_tokens=max_new_tokens, stop_ids=stop_ids,
                           stopper=stopper, forced=forced)

    def greedy_rows(self, input_ids, attention_mask, *, max_new_tokens: int, stop_ids, stopper=None):
        """Greedy new tokens of each row of a left-padded batch (up to and including its stop
        token) and the decode slots computed: :func:`~mathkit.evaluation.decoding.greedy_compacting`'s
        contract."""
        return self._decode(input_ids, attention_mask, max_new_tokens=max_new_tokens,
                            stop_ids=stop_ids, stopper=stopper)

    def forced_argmax(self, input_ids, attention_mask, forced: list[list[int]]) -> list[list[int]]:
        """The argmax at each position of ``forced[r]`` after row ``r``'s prompt (teacher forcing):
        how int8 and fp32 are compared token by token."""
        if len(forced) != len(input_ids):
            raise ValueError(f"{len(forced)} forced rows for a batch of {len(input_ids)}")
        return self._decode(input_ids, attention_mask, max_new_tokens=0, forced=forced)[0]

    def __repr__(self) -> str:
        return f"OnnxCausalLM({self.folder}, variant={self.variant!r})"

