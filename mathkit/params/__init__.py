"""Typed parameters for every notebook, validated before any model or dataset is loaded.

Each notebook has one pydantic schema in this package (``arithmetic_cot.py`` for notebook 01, ...).
The YAML files under ``params/<notebook>/`` and the notebook's ``parameters`` cell use the field
names of that schema. Validation errors become one line naming the file and the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from mathkit.errors import ParamsError


class NotebookParams(BaseModel):
    """Fields every notebook shares. Unknown keys and wrong types are errors, not surprises."""

    model_config = ConfigDict(extra="forbid", strict=True, validate_assignment=True)

    seed: int = 0
    output_dir: str = "reports/unnamed"

    @classmethod
    def from_namespace(cls, namespace: dict[str, Any], source: str = "notebook parameters"):
        """Build from a notebook's globals: the variables named like the schema's fields."""
        values = {k: namespace[k] for k in cls.model_fields if k in namespace}
        return validate(cls, values, source)


def _format_error(err: ValidationError, source: str) -> str:
    first = err.errors()[0]
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
            schema(**{**merged, **data})
        except ValidationError as err:
            raise ParamsError(_format_error(err, str(f))) from None
        merged.update(data)
    if overrides:
        merged.update(overrides)
    return validate(schema, merged, str(files[-1]) if files else "parameters")
