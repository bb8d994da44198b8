"""Typed parameters for every notebook, validated before any model or dataset is loaded.

Each notebook has one pydantic schema in this package (``arithmetic_cot.py`` for notebook 01, ...).
The YAML files under ``params/<notebook>/`` and the notebook's ``parameters`` cell use the field
names of that schema. Training notebooks add a ``training:`` block of TRL ``SFTConfig`` fields
(:mod:`mathkit.params.training`). Validation errors become one line naming the file and the key
(``training.<key>`` inside the training block).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mathkit.errors import ParamsError


class TrainingSettingError(ParamsError, ValueError):
    """A key of a ``training:`` block is unknown or has a bad value.

    A ``ValueError`` too, so that pydantic reports it as a validation error of the schema (and the
    message names the file); raised outside validation it is a plain :class:`ParamsError`.
    """

    def __init__(self, key: str, message: str):
        self.key, self.reason = key, message
        super().__init__(f"key 'training.{key}': {message}" if key else f"key 'training': {message}")


class NotebookParams(BaseModel):
    """Fields every notebook shares. Unknown keys and wrong types are errors, not surprises."""

    model_config = ConfigDict(extra="forbid", strict=True, validate_assignment=True)

    seed: int = 0
    output_dir: str = "reports/unnamed"
    # torch CPU threads for the whole notebook (0: torch's default, one per core). On a CPU shared
    # with other jobs, fewer threads than cores can be several times faster.
    threads: int = Field(0, ge=0, le=256)

    @classmethod
    def from_namespace(cls, namespace: dict[str, Any], source: str = "notebook parameters"):
        """Build from a notebook's globals: the variables named like the schema's fields."""
        values = {k: namespace[k] for k in cls.model_fields if k in namespace}
        return validate(cls, values, source)


def _format_error(err: ValidationError, source: str) -> str:
    first = err.errors()[0]
    cause = (first.get("ctx") or {}).get("error")
    if isinstance(cause, TrainingSettingError):
        return f"{source}: {cause}"
    key = ".".join(str(p) for p in first["loc"]) or "<top level>"
    if first["type"] == "extra_forbidden":
        return f"{source}: unknown key '{key}'"
    got = first.get("input")
    more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"{source}: key '{key}': {first['msg']} (got {got!r}){more}"


def validate(schema: type[NotebookParams], values: dict[str, Any], source: str) -> NotebookParams:
    """Validate ``values`` against ``schema``; raise :class:`ParamsError` with one line."""
    if not isinstance(values, dict):
        raise ParamsError(f"{source}: expected a mapping of parameter names to values")
    try:
        return schema(**values)
    except ValidationError as err:
        raise ParamsError(_format_error(err, source)) from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read one parameter file; an empty file is an empty mapping."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: parameter file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML ({err.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: expected a mapping of parameter names to values")
    return data


def merge_values(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """``update`` over ``base``; a mapping value (the ``training`` block) is merged key by key.

    A dotted key (``training.max_steps``, as ``--set`` writes it) sets one key of a mapping.
    """
    merged = dict(base)
    for key, value in update.items():
        outer, dot, inner = key.partition(".")
        if dot:
            value, key = {inner: value}, outer
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            value = {**merged[key], **value}
        merged[key] = value
    return merged


def load_params(schema: type[NotebookParams], *files: str | Path,
                overrides: dict[str, Any] | None = None) -> NotebookParams:
    """Merge parameter files (later files win) and overrides, then validate.

    Each file is checked on its own first so that an error names the file that holds the key.
    """
    merged: dict[str, Any] = {}
    for f in files:
        data = read_yaml(f)
        bad = [k for k in data if k not in schema.model_fields]
        if bad:
            raise ParamsError(f"{f}: unknown key '{bad[0]}'")
        try:
            schema(**merge_values(merged, data))
        except ValidationError as err:
            raise ParamsError(_format_error(err, str(f))) from None
        merged = merge_values(merged, data)
    if overrides:
        merged = merge_values(merged, overrides)
    return validate(schema, merged, str(files[-1]) if files else "parameters")
