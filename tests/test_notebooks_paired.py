"""Every notebook is a jupytext pair whose .py (the source of truth) and .ipynb hold the same cells."""

from pathlib import Path

import jupytext
import pytest

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.py"))


def cells(nb):
    return [(c.cell_type, c.source.strip(), sorted(c.metadata.get("tags", []))) for c in nb.cells]


@pytest.mark.parametrize("source", NOTEBOOKS, ids=lambda p: p.stem)
def test_pair_in_sync(source):
    paired = source.with_suffix(".ipynb")
    assert paired.is_file(), f"{paired} missing: run `make sync`"
    assert cells(jupytext.read(source)) == cells(jupytext.read(paired)), (
        f"{source.name} and {paired.name} differ: edit the .py, then run `make sync`")


@pytest.mark.parametrize("source", NOTEBOOKS, ids=lambda p: p.stem)
def test_paired_notebook_has_no_outputs_and_a_parameters_cell(source):
    nb = jupytext.read(source.with_suffix(".ipynb"))
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "strip outputs"
    tags = [t for c in nb.cells for t in c.metadata.get("tags", [])]
    assert tags.count("parameters") == 1
