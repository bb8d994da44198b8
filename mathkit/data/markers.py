"""The markers of the reasoning format, defined once: ``<think>…</think>`` around the steps and
``<end>`` after the answer of an arithmetic example. Data formatting, answer extraction, the
character tokenizer and the solve command all read them from here."""

THINK_START = "<think>"
THINK_END = "</think>"
END = "<end>"
