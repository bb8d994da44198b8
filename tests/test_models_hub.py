"""Hub ids: a quick, clear HubUnavailableError when the hub is out of reach (never a 50 s retry)."""

import pytest

from mathkit.errors import HubUnavailableError
from mathkit.models import hub


@pytest.fixture
def offline(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


def test_offline_mode_is_a_reason(offline):
    assert hub.hub_unreachable_reason() == "HF_HUB_OFFLINE is set"


def test_unreachable_host_is_a_reason(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "https://127.0.0.1:9")  # discard port: refused
    assert "cannot connect to 127.0.0.1:9" in hub.hub_unreachable_reason(timeout=1)


def test_offline_hub_id_becomes_one_clear_error(offline):
    with pytest.raises(HubUnavailableError) as err:
        hub.from_hub("nobody/no-such-model", {})
    message = str(err.value)
    assert "nobody/no-such-model" in message and "HF_HUB_OFFLINE is set" in message
    assert "'smollm2-135m-instruct'" in message and "'gemma-3-270m'" in message


def test_any_hub_failure_becomes_hub_unavailable(monkeypatch):
    from transformers import AutoTokenizer

    def refuse(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr(hub, "hub_unreachable_reason", lambda: None)
    monkeypatch.setattr(AutoTokenizer, "from_pretrained", refuse)
    with pytest.raises(HubUnavailableError, match="OSError: We couldn't connect"):
        hub.from_hub("HuggingFaceTB/SmolLM2-135M", {})
