"""Models: the small arithmetic decoder, its positional encodings, and one save/load for all.

Importing this package (or mathkit.models.decoder) registers ``mathkit_decoder`` with AutoConfig / AutoModel /
AutoModelForCausalLM, so ``AutoModelForCausalLM.from_pretrained(dir)`` reads our models.
"""

from mathkit.models.config import MODEL_SIZES, TARGET_PARAMETERS, MathDecoderConfig, ModelConfigError
from mathkit.models.decoder import MathDecoderForCausalLM, MathDecoderModel, build_decoder
from mathkit.models.base import load_base_model
from mathkit.models.io import ModelNotFoundError, load_model, save_model
from mathkit.models.positional import (
    PositionalEncoding,
    build_positional,
    known_positional,
    register_positional,
)

__all__ = [
    "MODEL_SIZES",
    "TARGET_PARAMETERS",
    "MathDecoderConfig",
    "MathDecoderForCausalLM",
    "MathDecoderModel",
    "ModelConfigError",
    "ModelNotFoundError",
    "PositionalEncoding",
    "build_decoder",
    "build_positional",
    "known_positional",
    "load_base_model",
    "load_model",
    "register_positional",
    "save_model",
]
