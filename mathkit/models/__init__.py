"""Models: the small arithmetic decoder, its positional encodings, and one load/save for all.

``load(name_or_path, ...)`` is the one loader (offline aliases, saved folders, adapters, hub ids),
``save(model, tokenizer, out_dir)`` the one save, ``describe(name_or_path)`` their provenance.
Importing this package (or mathkit.models.decoder) registers ``mathkit_decoder`` with AutoConfig /
AutoModel / AutoModelForCausalLM, so ``AutoModelForCausalLM.from_pretrained(dir)`` reads our models.
"""

from mathkit.models.config import MODEL_SIZES, TARGET_PARAMETERS, MathDecoderConfig, ModelConfigError
from mathkit.models.decoder import MathDecoderForCausalLM, MathDecoderModel, build_decoder
from mathkit.models.io import ModelNotFoundError, save
from mathkit.models.loading import load
from mathkit.models.positional import (
    PositionalEncoding,
    build_positional,
    known_positional,
    register_positional,
)
from mathkit.models.provenance import describe
from mathkit.models.registry import OFFLINE_MODELS

__all__ = [
    "MODEL_SIZES",
    "OFFLINE_MODELS",
    "TARGET_PARAMETERS",
    "MathDecoderConfig",
    "MathDecoderForCausalLM",
    "MathDecoderModel",
    "ModelConfigError",
    "ModelNotFoundError",
    "PositionalEncoding",
    "build_decoder",
    "build_positional",
    "describe",
    "known_positional",
    "load",
    "register_positional",
    "save",
]
