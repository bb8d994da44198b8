"""Hub sources: each column mapping on in-memory rows, fail-fast offline, and the loading path
with a stand-in for ``datasets.load_dataset`` (no test touches the network)."""

import socket

import pytest
from datasets import Dataset

from mathkit.data import hub
from mathkit.data.schema import COLUMNS
from mathkit.errors import DataError, HubUnavailableError

# One row per source, with the columns of its dataset card.
ROWS = {
    "gsm8k": {"question": "Natalia sold clips to 48 of her friends in April, and then she sold half as many "
                          "clips in May. How many clips did Natalia sell altogether in April and May?",
              "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 "
                        "clips altogether in April and May.\n#### 72"},
    "math": {"problem": "What is $\\frac{1}{2}+\\frac{1}{3}$?", "solution": "We get $\\boxed{\\frac{5}{6}}$.",
             "answer": "\\frac{5}{6}", "subject": "Prealgebra", "level": 2, "unique_id": "test/prealgebra/1.json"},
    "mathx": {"question": "Solve: If 3x + 7 = 22, what is the value of x?",
              "generated_solution": "<think>\nStep 1: 3x = 15\nStep 2: x = 5\n</think>\nTherefore, x = 5",
              "expected_answer": "5"},
    "numinamath": {"problem_id": 17, "prompt": "Compute $2^{10}$.", "response": "<think>2^10 = 1024</think>\n"
                   "The answer is $\\boxed{1024}$.", "ground_truth": "1024", "correct": True},
    "metamathqa": {"query": "James has 3 bags of 4 apples. How many apples?",
                   "response": "He has 3 * 4 = 12 apples.\nThe answer is: 12", "type": "GSM_Rephrased",
                   "original_question": "..."},
    "openmathinstruct2": {"problem": "Find $x$ if $2x = 8$.", "generated_solution": "Divide by 2: $x = \\boxed{4}$.",
                          "expected_answer": "4", "problem_source": "augmented_math"},
    "mathinstruct": {"instruction": "What is 15% of 80?", "output": "15% of 80 is 0.15 * 80 = 12.\nThe answer is 12.",
                     "source": "data/CoT/gsm_rft.json"},
    "gsm_hard": {"input": "Janet's ducks lay 16 eggs per day ... How much in dollars does she make every day?",
                 "code": "def solution():\n    return 18\n", "target": 18.0},
}
EXPECTED = {  # (problem start, solution, answer, category)
    "gsm8k": ("Natalia sold clips", "Natalia sold 48/2 = 24 clips in May.\nNatalia sold 48+24 = 72 clips altogether "
              "in April and May.", "72", "gsm8k"),
    "math": ("What is", "We get $\\boxed{\\frac{5}{6}}$.", "\\frac{5}{6}", "math/Prealgebra"),
    "mathx": ("Solve: If 3x", "Step 1: 3x = 15\nStep 2: x = 5\n\nTherefore, x = 5", "5", "mathx"),
    "numinamath": ("Compute", "2^10 = 1024\nThe answer is $\\boxed{1024}$.", "1024", "numinamath"),
    "metamathqa": ("James has", "He has 3 * 4 = 12 apples.", "12", "metamath/GSM_Rephrased"),
    "openmathinstruct2": ("Find $x$", "Divide by 2: $x = \\boxed{4}$.", "4", "openmathinstruct2/augmented_math"),
    "mathinstruct": ("What is 15%", "15% of 80 is 0.15 * 80 = 12.", "12", "mathinstruct/data/CoT/gsm_rft.json"),
    "gsm_hard": ("Janet's ducks", "def solution():\n    return 18\n", "18", "gsm_hard"),
}


def test_every_hub_source_has_a_tested_mapping():
    assert set(ROWS) == set(hub.HUB_SOURCES) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(ROWS))
def test_mapping_on_a_card_row(name):
    rec = hub.map_row(name, ROWS[name], index=3, split="test")
    problem, solution, answer, category = EXPECTED[name]
    assert list(rec) == list(COLUMNS)
    assert rec["problem"].startswith(problem)
    assert rec["solution"] == solution
    assert rec["answer"] == answer
    assert rec["category"] == category
    assert rec["source"] == name and rec["template"] == "" and rec["id"].startswith(name)


def test_mapping_options_skip_rows():
    assert hub.map_row("numinamath", {**ROWS["numinamath"], "correct": False}) is None
    assert hub.map_row("numinamath", {**ROWS["numinamath"], "correct": False}, only_correct=False) is not None
    pot = {**ROWS["mathinstruct"], "source": "data/PoT/mathqa.json"}
    assert hub.map_row("mathinstruct", pot) is None
    assert hub.map_row("mathinstruct", pot, include_pot=True) is not None
    assert hub.map_row("math", ROWS["math"], subjects=["Algebra"]) is None
    assert hub.map_row("math", {**ROWS["math"], "level": "Level 2"}, levels=[2]) is not None


def test_mapping_variants_of_columns():
    mirror = {"problem": "p", "solution": "so \\boxed{7}", "type": "Algebra", "level": "Level 1"}
    rec = hub.map_row("math", mirror, index=5, split="train")
    assert rec["answer"] == "7" and rec["category"] == "math/Algebra" and rec["id"] == "math/train/5"
    renamed = {"problem": "q", "generated_solution": "s", "expected_answer": "1"}  # MathX as renamed upstream
    assert hub.map_row("mathx", renamed)["problem"] == "q"
    boxed_truth = {**ROWS["numinamath"], "ground_truth": "\\boxed{1024}"}
    assert hub.map_row("numinamath", boxed_truth)["answer"] == "1024"
    assert hub.map_row("gsm_hard", {**ROWS["gsm_hard"], "target": 2.5})["answer"] == "2.5"


def test_missing_columns_and_unknown_options_are_clear():
    with pytest.raises(DataError, match=r"lacks column\(s\) \['answer'\].*it has \['question'\]"):
        hub.map_row("gsm8k", {"question": "q"})
    with pytest.raises(DataError, match="does not take option"):
        hub.map_row("gsm8k", ROWS["gsm8k"], language="deu")
    with pytest.raises(DataError, match="unknown hub source"):
        hub.map_row("gsm9k", {})
    with pytest.raises(DataError, match="no split 'test'"):
        hub.HUB_SOURCES["mathx"].hub_split("test")


@pytest.fixture
def no_download(monkeypatch):
    import datasets

    def refuse(*args, **kwargs):
        raise AssertionError("load_dataset must not be called")

    monkeypatch.setattr(datasets, "load_dataset", refuse)


@pytest.mark.parametrize("var", ["HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"])
def test_offline_mode_fails_at_once_naming_offline_sources(monkeypatch, no_download, var):
    monkeypatch.setenv(var, "1")

    def no_socket(*args, **kwargs):
        raise AssertionError("no connection attempt when offline mode is set")

    monkeypatch.setattr(socket, "create_connection", no_socket)
    with pytest.raises(HubUnavailableError, match=f"{var}=1") as info:
        hub.load_hub("gsm8k", split="test", n=5)
    for name in hub.OFFLINE_SOURCES:
        assert name in str(info.value)


def test_no_network_fails_within_the_timeout(monkeypatch, no_download):
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HTTPS_PROXY", "https_proxy", "HF_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)
    calls = []

    def unreachable(address, timeout):
        calls.append((address, timeout))
        raise socket.timeout("timed out")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    with pytest.raises(HubUnavailableError, match="no connection to huggingface.co:443 within 3 s"):
        hub.load_hub("math", split="test", n=5)
    assert calls == [(("huggingface.co", 443), hub.CONNECT_TIMEOUT_S)]


def test_hub_address_follows_proxy_and_endpoint(monkeypatch):
    for var in ("HTTPS_PROXY", "https_proxy", "HF_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)
    assert hub.hub_address() == ("huggingface.co", 443)
    monkeypatch.setenv("HF_ENDPOINT", "https://hf-mirror.example:8443")
    assert hub.hub_address() == ("hf-mirror.example", 8443)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.local:3128")
    assert hub.hub_address() == ("proxy.local", 3128)


def test_streamed_sources_need_n():
    with pytest.raises(DataError, match="give n"):
        hub.load_hub("numinamath")


@pytest.fixture
def fake_hub(monkeypatch):
    """``datasets.load_dataset`` answering from memory; records what it was asked."""
    import datasets

    asked = []

    def fake(repo, config=None, split=None, streaming=False, revision=None):
        asked.append({"repo": repo, "config": config, "split": split, "streaming": streaming})
        if repo == "openai/gsm8k":
            rows = [{"question": f"Q{i}: what is {i}+1?", "answer": f"{i}+1={i + 1}\n#### {i + 1}"} for i in range(40)]
        else:
            rows = [{**ROWS["numinamath"], "prompt": f"P{i}", "correct": i % 3 != 0} for i in range(60)]
        data = Dataset.from_list(rows)
        return data.to_iterable_dataset(num_shards=3) if streaming else data

    monkeypatch.setattr(hub, "check_hub_reachable", lambda name="hub", timeout=3.0: None)
    monkeypatch.setattr(datasets, "load_dataset", fake)
    return asked


def test_loading_a_small_set_maps_and_subsamples(fake_hub):
    ds = hub.load_hub("gsm8k", split="train", n=10, seed=1)
    assert fake_hub == [{"repo": "openai/gsm8k", "config": "main", "split": "train", "streaming": False}]
    assert len(ds) == 10 and ds.column_names == list(COLUMNS)
    assert all(int(a) == int(p.split("what is ")[1].split("+")[0]) + 1 for a, p in zip(ds["answer"], ds["problem"]))
    assert ds["id"] == hub.load_hub("gsm8k", split="train", n=10, seed=1)["id"]


def test_loading_a_streamed_set_takes_n_kept_rows_deterministically(fake_hub):
    ds = hub.load_hub("numinamath", n=12, seed=0, shuffle_buffer=20)
    assert fake_hub[0]["streaming"] is True
    assert len(ds) == 12
    kept_prompts = {f"P{i}" for i in range(60) if i % 3 != 0}
    assert set(ds["problem"]) <= kept_prompts  # incorrect traces skipped
    assert ds["problem"] == hub.load_hub("numinamath", n=12, seed=0, shuffle_buffer=20)["problem"]
    assert ds["problem"] != hub.load_hub("numinamath", n=12, seed=1, shuffle_buffer=20)["problem"]


def test_a_failing_download_becomes_one_hub_error(monkeypatch):
    import datasets

    def broken(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'openai/gsm8k' on the Hub")

    monkeypatch.setattr(hub, "check_hub_reachable", lambda name="hub", timeout=3.0: None)
    monkeypatch.setattr(datasets, "load_dataset", broken)
    with pytest.raises(HubUnavailableError, match="ConnectionError.*gsm8k_originals"):
        hub.load_hub("gsm8k", n=3)
