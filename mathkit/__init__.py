"""mathkit: mathematical reasoning in small language models, notebook first.

The notebooks under ``notebooks/`` tell the story; this package holds the logic they call.
"""

__version__ = "0.1.0"
