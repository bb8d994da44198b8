"""The notebooks of this repo and the parameter schema each one takes.

The runner looks a notebook up here to validate its parameters before papermill starts a kernel.
Schemas are named by import path so that listing notebooks never imports torch.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from mathkit.errors import ParamsError


@dataclass(frozen=True)
class NotebookSpec:
    name: str          # stem of notebooks/<name>.py, params/<name>/, reports/<name>/
    title: str
    schema: str        # "module:Class" of its NotebookParams subclass

    def load_schema(self):
        module, _, cls = self.schema.partition(":")
        return getattr(importlib.import_module(module), cls)


NOTEBOOKS: dict[str, NotebookSpec] = {
    spec.name: spec
    for spec in (
        NotebookSpec("00_base_model_eval", "Base model, zero-shot, on the offline math sets",
                     "mathkit.params.base_model_eval:BaseModelEvalParams"),
        NotebookSpec("01_arithmetic_cot", "Arithmetic chain-of-thought from scratch",
                     "mathkit.params.arithmetic_cot:ArithmeticCotParams"),
        NotebookSpec("02_lora_sft", "LoRA fine-tuning, base vs fine-tuned",
                     "mathkit.params.lora_sft:LoraSftParams"),
        NotebookSpec("03_qlora_gemma3_mathx", "QLoRA fine-tuning of Gemma-3 on MathX-style <think> solutions",
                     "mathkit.params.qlora_gemma3:QloraGemma3Params"),
        NotebookSpec("04_pe_ablation", "Positional encodings and length generalization in addition",
                     "mathkit.params.pe_ablation:PeAblationParams"),
        NotebookSpec("05_distillation", "Knowledge distillation into a smaller arithmetic model",
                     "mathkit.params.distillation:DistillationParams"),
    )
}


def available(notebooks_dir: Path) -> list[NotebookSpec]:
    """Registered notebooks whose source file exists in ``notebooks_dir``, in order."""
    return [s for n, s in sorted(NOTEBOOKS.items()) if (notebooks_dir / f"{n}.py").is_file()]


def resolve(name: str, notebooks_dir: Path) -> NotebookSpec:
    """Find a notebook by full name (``01_arithmetic_cot``) or unique prefix (``01``)."""
    specs = available(notebooks_dir)
    exact = [s for s in specs if s.name == name.removesuffix(".py").removesuffix(".ipynb")]
    matches = exact or [s for s in specs if s.name.startswith(name)]
    if len(matches) == 1:
        return matches[0]
    known = ", ".join(s.name for s in specs) or "none"
    if not matches:
        raise ParamsError(f"unknown notebook '{name}'; known: {known}")
    raise ParamsError(f"notebook '{name}' is ambiguous; known: {known}")
