"""How the ablation grid builds each run's model: a fresh small decoder, or a pretrained GPT-NeoX
(Pythia) whose rotary embedding is swapped for the run's encoding and trained with LoRA.

A recipe is a picklable description (runs may train in worker processes) with one method,
``build(encoding, tokenizer, seed)``, that returns a model ready for :func:`mathkit.training.train`.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class Recipe:
    """What every recipe offers the grid runner besides ``build``: the run's trainer class (None:
    plain supervised training) and the settings beyond the grid's that make two runs the same."""

    def trainer_class(self, run):
        return None

    def arm_settings(self, run) -> dict:
        return {}


@dataclass
class ModelRecipe(Recipe):
    """A freshly initialised small decoder: one size and context; options per encoding name."""

    size: str
    max_length: int
    pe_options: dict[str, dict] = field(default_factory=dict)
    pe_layers: list[int] | None = None
    overrides: dict = field(default_factory=dict)  # other config fields over the size (a narrower width, ...)

    def config(self, encoding: str, tokenizer):
        """The config every run of ``encoding`` builds its model from (no weights)."""
        from mathkit.models.decoder import decoder_config

        return decoder_config(self.size, tokenizer, positional_encoding=encoding, max_position_embeddings=self.max_length,
                              pe_options=dict(self.pe_options.get(encoding, {})), pe_layers=self.pe_layers,
                              **self.overrides)

    def build(self, encoding: str, tokenizer, seed: int):
        from mathkit.env import seed_everything
        from mathkit.models import MathDecoderForCausalLM

        config = self.config(encoding, tokenizer)
        seed_everything(seed)
        return MathDecoderForCausalLM(config)


@dataclass
class DistillationRecipe(ModelRecipe):
    """Fresh small-decoder students, one training variant per arm: ``arms`` maps an arm's name to
    ``{"teachers": [folder, ...], "distillation": {...}}`` (a
    :class:`~mathkit.training.distillation.DistillationConfig` block); an arm without teachers
    trains the student on the labels alone (from scratch). Teachers are saved model folders, loaded
    once per process, frozen."""

    arms: dict[str, dict] = field(default_factory=dict)
    _teachers: dict = field(default_factory=dict, repr=False, compare=False)

    def __getstate__(self):  # worker processes load their own teachers
        return {**self.__dict__, "_teachers": {}}

    def teacher(self, folder: str):
        if folder not in self._teachers:
            from mathkit.models import load

            self._teachers[folder] = load(folder, device="cpu")[0]
        return self._teachers[folder]

    def trainer_class(self, run):
        from mathkit.training.distillation import distillation_trainer

        arm = self.arms[run.arm]
        if not arm.get("teachers"):
            return None
        return distillation_trainer([self.teacher(t) for t in arm["teachers"]], arm.get("distillation") or {})

    def arm_settings(self, run) -> dict:
        """What makes two runs of an arm the same run (its teachers and loss), for the grid's cache."""
        return {"arm": self.arms[run.arm], "overrides": self.overrides}


@dataclass
class NeoXRecipe(Recipe):
    """A pretrained GPT-NeoX (``base_model``: a hub id such as ``EleutherAI/pythia-410m``, a folder,
    or a random stand-in's name) with every attention layer's rotary embedding replaced by the
    run's encoding (:func:`mathkit.models.neox_positional.swap_positional`) and LoRA on the
    attention projections, the encoding's own parameters trained with it
    (:func:`~mathkit.models.neox_positional.attach_lora_with_pe`).

    ``dtype``: the frozen base's weights (float16 on a T4); the trained parameters (LoRA and the
    encodings) are kept in float32 whatever it is, as mixed-precision training needs.
    ``gradient_checkpointing`` must match the training block's ``activation_checkpointing``.
    """

    base_model: str
    dtype: str = "float32"
    lora_r: int = 32
    lora_alpha: float = 64.0
    lora_dropout: float = 0.1
    gradient_checkpointing: bool = False
    pe_options: dict[str, dict] = field(default_factory=dict)
    pe_layers: list[int] | None = None

    def source(self) -> str:
        """The folder or hub id to load (a random stand-in is written to the cache once)."""
        from mathkit.models.registry import resolve_stand_in

        return resolve_stand_in(self.base_model)

    def load_tokenizer(self):
        """The base model's tokenizer, with a pad token (Pythia has none: its end-of-text)."""
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(self.source())
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        return tokenizer

    def build(self, encoding: str, tokenizer, seed: int):
        import torch

        from mathkit.env import seed_everything
        from mathkit.errors import ParamsError
        from mathkit.models import load
        from mathkit.models.neox_positional import attach_lora_with_pe, swap_positional

        seed_everything(seed)  # the new encodings' and LoRA's initialisation
        model, _ = load(self.source(), dtype=self.dtype)
        if getattr(model.config, "model_type", None) != "gpt_neox":
            raise ParamsError(f"{self.base_model} is a {model.config.model_type!r} model; the positional swap "
                              "needs GPT-NeoX (e.g. EleutherAI/pythia-410m)")
        swap_positional(model, encoding, dict(self.pe_options.get(encoding, {})), self.pe_layers,
                        tokenizer=tokenizer)
        model = attach_lora_with_pe(model, r=self.lora_r, alpha=self.lora_alpha, dropout=self.lora_dropout,
                                    gradient_checkpointing=self.gradient_checkpointing)
        for parameter in model.parameters():
            if parameter.requires_grad and parameter.dtype != torch.float32:
                parameter.data = parameter.data.float()
        return model
