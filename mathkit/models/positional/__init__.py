"""Positional encodings for the small decoder: one module per method, one interface, a registry.

``base`` holds the interface (:class:`PositionalEncoding` with its three hooks), the per-forward
:class:`PositionContext`, the registry and :func:`check_unshared`; importing this package registers
every method below. Add a method as a module here with ``@register_positional("name")`` and import
it in this file.
"""

from mathkit.models.positional import (  # noqa: F401  (each import registers its methods)
    abacus,
    alibi,
    diet,
    fire,
    learned,
    math_adaptive,
    nope,
    rope,
    sinusoidal,
    t5_relative,
)
from mathkit.models.positional.abacus import Abacus, digit_places
from mathkit.models.positional.alibi import ALiBi, geometric_slopes
from mathkit.models.positional.base import (
    KINDS,
    PositionalEncoding,
    PositionContext,
    SharedParameterError,
    build_positional,
    check_unshared,
    known_positional,
    positional_class,
    register_positional,
    validate_positional,
)
from mathkit.models.positional.diet import DietAbsolute, DietRelative
from mathkit.models.positional.fire import FIRE
from mathkit.models.positional.learned import LearnedPositionalEncoding
from mathkit.models.positional.math_adaptive import MathAdaptiveRotary
from mathkit.models.positional.nope import NoPositionalEncoding
from mathkit.models.positional.rope import RotaryPositionalEncoding
from mathkit.models.positional.sinusoidal import SinusoidalPositionalEncoding
from mathkit.models.positional.t5_relative import T5RelativeBias, causal_bucket

__all__ = [
    "ALiBi",
    "Abacus",
    "DietAbsolute",
    "DietRelative",
    "FIRE",
    "KINDS",
    "LearnedPositionalEncoding",
    "MathAdaptiveRotary",
    "NoPositionalEncoding",
    "PositionContext",
    "PositionalEncoding",
    "RotaryPositionalEncoding",
    "SharedParameterError",
    "SinusoidalPositionalEncoding",
    "T5RelativeBias",
    "build_positional",
    "causal_bucket",
    "check_unshared",
    "digit_places",
    "geometric_slopes",
    "known_positional",
    "positional_class",
    "register_positional",
    "validate_positional",
]
