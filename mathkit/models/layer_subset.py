"""A student initialised from some of a teacher's layers (DistilBERT's initialisation).

Sanh et al. 2019 ("DistilBERT", arXiv:1910.01108) start the student from the teacher: same
embeddings and head, one layer out of two. :func:`student_from_layers` does that for any layer list:
a new model of the teacher's class whose ``num_hidden_layers`` is ``len(layers)`` and whose
embeddings, final norm, head and chosen decoder layers are copies of the teacher's (the teacher is
not touched, and nothing is shared with it). :func:`spread` and :func:`every_other` pick the layers.

transformers has no helper for this, so it is written here: the student's config is the teacher's
with the layer count and the per-layer config lists cut to the chosen layers, the student is built
from it (so each layer knows its new index, which the KV cache uses), and the teacher's weights are
copied in with the layer indices renamed. Supported: the Llama family (SmolLM2), Gemma-3 text and
mathkit's small decoder, whose per-layer positional encodings follow their layers.
"""

from __future__ import annotations

import copy
import logging
import re

import torch

from mathkit.errors import MathkitError
from mathkit.models.config import MathDecoderConfig, ModelConfigError
from mathkit.models.positional import positional_class

log = logging.getLogger(__name__)

# Architectures whose layout was checked here: layers at ``<prefix>.layers.<i>``, and no config
# field indexed by layer other than PER_LAYER_FIELDS (and the small decoder's pe_layers, which holds
# indices and is remapped by _decoder_fields).
SUPPORTED_MODEL_TYPES = ("gemma3_text", "llama", MathDecoderConfig.model_type)
PER_LAYER_FIELDS = ("layer_types",)  # one value per layer: cut to the chosen layers


class UnsupportedArchitectureError(MathkitError, ValueError):
    """The model is not one whose layers :func:`student_from_layers` knows how to cut."""


def every_other(n_teacher: int) -> list[int]:
    """Layers 0, 2, 4, ... of an ``n_teacher``-layer model (DistilBERT's choice for BERT)."""
    _check_count(n_teacher, "n_teacher")
    return list(range(0, n_teacher, 2))


def spread(n_teacher: int, n_student: int) -> list[int]:
    """``n_student`` layers evenly spread over ``n_teacher``, the first and the last included
    (the first reads the embeddings, the last feeds the final norm and head)."""
    _check_count(n_teacher, "n_teacher")
    _check_count(n_student, "n_student")
    if n_student > n_teacher:
        raise ModelConfigError(f"a student of {n_student} layers cannot be cut from a teacher of {n_teacher}; "
                               f"ask for at most {n_teacher}")
    if n_student == 1 and n_teacher > 1:
        raise ModelConfigError("spread keeps the first and the last layer, so it needs n_student >= 2; "
                               "for a one-layer student pass layers=[i] to student_from_layers")
    if n_student == n_teacher:
        return list(range(n_teacher))
    step, rest = n_teacher - 1, n_student - 1
    return [(2 * i * step + rest) // (2 * rest) for i in range(n_student)]  # round(i * step / rest), half up


def _check_count(value, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ModelConfigError(f"{name} must be a positive number of layers, got {value!r}")


def check_layers(layers, n_teacher: int) -> list[int]:
    """``layers`` as a list, after checking it names distinct teacher layers in increasing order."""
    if isinstance(layers, (str, bytes)) or not hasattr(layers, "__iter__"):
        raise ModelConfigError(f"layers must be a list of teacher layer indices, got {layers!r}")
    layers = list(layers)
    if not layers:
        raise ModelConfigError("layers is empty: a student needs at least one layer")
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in layers):
        raise ModelConfigError(f"layers must hold integer layer indices, got {layers!r}")
    outside = [i for i in layers if not 0 <= i < n_teacher]
    if outside:
        raise ModelConfigError(f"layers {outside} are outside the teacher's 0..{n_teacher - 1} "
                               f"({n_teacher} layers); negative indices are not accepted")
    if any(b <= a for a, b in zip(layers, layers[1:])):
        raise ModelConfigError(f"layers {layers} must be distinct and in increasing order "
                               f"(the student keeps the teacher's order), e.g. {sorted(set(layers))}")
    return layers


def _check_supported(model) -> tuple[str, str]:
    """``(model_type, key prefix of the layers)`` for a model this module can cut; else a clear error."""
    if hasattr(model, "get_base_model") or hasattr(model, "peft_config"):
        raise UnsupportedArchitectureError(
            "this is a peft model: merge the adapter first (model.merge_and_unload(), or "
            "mathkit.models.load(..., merge=True)) and cut layers from the plain model")
    if getattr(model, "hf_quantizer", None) is not None or getattr(model, "is_quantized", False):
        raise UnsupportedArchitectureError(
            "this model is quantized: load it in bf16/fp32 (for a GGUF file, dequantized) to cut layers")
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise UnsupportedArchitectureError(
            f"cannot cut layers of a {type(model).__name__} (model_type {model_type!r}); supported model "
            f"types: {', '.join(SUPPORTED_MODEL_TYPES)}")
    if getattr(config, "is_heterogeneous", False):
        raise UnsupportedArchitectureError(
            f"{type(model).__name__} has per-layer config overrides (per_layer_config), which are not cut here")
    prefix = model.base_model_prefix
    blocks = getattr(getattr(model, prefix, None), "layers", None)
    if not isinstance(blocks, torch.nn.ModuleList) or len(blocks) != config.num_hidden_layers:
        raise UnsupportedArchitectureError(
            f"{type(model).__name__} keeps no {prefix}.layers list of {config.num_hidden_layers} layers")
    return model_type, f"{prefix}.layers."


def _decoder_fields(config: MathDecoderConfig, layers: list[int]) -> dict:
    """The small decoder's ``pe_layers`` for the student: each chosen layer keeps its positional
    encoding or its NoPE; an absolute one stays at the input, as in the teacher."""
    if config.pe_layers is None:
        return {}
    on = set(config.positional_layers())
    if positional_class(config.positional_encoding).kind == "absolute":
        return {"pe_layers": [0] if on else []}
    return {"pe_layers": [j for j, i in enumerate(layers) if i in on]}


def _student_config(config, layers: list[int]):
    """The teacher's ``config`` with ``len(layers)`` layers and its per-layer fields cut to match."""
    fields = config.to_dict()
    fields["num_hidden_layers"] = len(layers)
    for name in PER_LAYER_FIELDS:
        values = getattr(config, name, None)
        if isinstance(values, (list, tuple)):
            fields[name] = [values[i] for i in layers]
    if isinstance(config, MathDecoderConfig):
        fields.update(_decoder_fields(config, layers))
    student = type(config).from_dict(fields)  # validated like any config
    student._attn_implementation = config._attn_implementation  # the teacher's attention backend
    return student


def _teacher_key(key: str, prefix: str, layers: list[int], absolute_pe: bool) -> str:
    """The teacher's name for a student weight: layer j of the student is teacher layer layers[j].
    An absolute positional encoding belongs to the input (layer 0's instance) in both."""
    match = re.match(rf"{re.escape(prefix)}(\d+)\.(.*)", key)
    if match is None:
        return key  # embeddings, final norm, head
    j, rest = int(match.group(1)), match.group(2)
    source = 0 if absolute_pe and rest.startswith("positional.") else layers[j]
    return f"{prefix}{source}.{rest}"


def student_from_layers(model, layers) -> torch.nn.Module:
    """A new model of ``model``'s class with ``len(layers)`` layers: layer j is a copy of the
    teacher's layer ``layers[j]``; embeddings, final norm and head are copies too.

    The student has the teacher's dtype, device, training mode and generation config; all its
    parameters are trainable and none is shared with the teacher, which is left as it was.
    """
    model_type, prefix = _check_supported(model)
    config = model.config
    layers = check_layers(layers, config.num_hidden_layers)
    absolute_pe = isinstance(config, MathDecoderConfig) and (
        positional_class(config.positional_encoding).kind == "absolute")
    student = type(model)(_student_config(config, layers))
    first = next(model.parameters())
    student.to(device=first.device, dtype=first.dtype)
    teacher_state = model.state_dict()
    state = {key: teacher_state[_teacher_key(key, prefix, layers, absolute_pe)] for key in student.state_dict()}
    student.load_state_dict(state, strict=True)  # copies: the student shares no storage with the teacher
    student.generation_config = copy.deepcopy(model.generation_config)
    student.train(model.training)
    log.info("student %s from teacher layers %s of %d (%s)", type(model).__name__, layers,
             config.num_hidden_layers, model_type)
    return student
