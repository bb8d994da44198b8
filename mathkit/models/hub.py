"""Models from the Hugging Face hub, failing fast and clearly when the hub is out of reach.

Without a network, huggingface_hub retries for ~50 s before it gives up; one DNS lookup and TCP
connect tells the same in a few seconds. Then a copy already in the hub cache still loads
(``local_files_only``), and every other outcome becomes one :class:`HubUnavailableError`.
"""

from __future__ import annotations

import socket
from urllib.parse import urlparse

from mathkit.errors import HubUnavailableError
from mathkit.models.registry import OFFLINE_MODELS


def hub_unreachable_reason(timeout: float = 3.0) -> str | None:
    """Why the hub cannot be reached right now, or None."""
    from huggingface_hub import constants

    if constants.is_offline_mode():
        return "HF_HUB_OFFLINE is set"
    url = urlparse(constants.ENDPOINT)
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as err:
        return f"cannot connect to {host}:{port} ({err})"
    return None


def hub_error(name: str, reason: str) -> HubUnavailableError:
    aliases = ", ".join(f"'{n}'" for n in OFFLINE_MODELS)
    return HubUnavailableError(
        f"cannot load model {name!r}: it is not a local folder, and the Hugging Face hub is "
        f"unavailable or does not have it ({reason}). Offline, use {aliases} (bundled) or the path "
        "of a saved model; for gated hub models set HF_TOKEN")


def from_hub(name: str, model_kwargs: dict, cache_dir=None):
    """``(model, tokenizer)`` for hub id ``name``; ``model_kwargs`` go to ``from_pretrained``."""
    from huggingface_hub import errors as hub_errors
    from transformers import AutoModelForCausalLM, AutoTokenizer

    reason = hub_unreachable_reason()
    hub_kwargs: dict = {"local_files_only": True} if reason else {}  # a cached copy still works
    if cache_dir is not None:
        hub_kwargs["cache_dir"] = str(cache_dir)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, **hub_kwargs)
        model = AutoModelForCausalLM.from_pretrained(name, **model_kwargs, **hub_kwargs)
    except (OSError, hub_errors.HfHubHTTPError, hub_errors.HFValidationError,
            hub_errors.OfflineModeIsEnabled) as err:
        raise hub_error(name, reason or f"{type(err).__name__}: {str(err).splitlines()[0]}") from err
    return model, tokenizer
