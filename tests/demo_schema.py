"""Parameter schema of the throw-away notebook that tests/test_runner.py executes."""

from mathkit.params import NotebookParams


class DemoNotebookParams(NotebookParams):
    fail: bool = False
