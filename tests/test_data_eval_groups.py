"""Evaluation groups drawn apart from a training pool, and the training pool itself."""

from mathkit.data.eval_groups import draw_eval_groups
from mathkit.data.training_pool import draw_training_pool

SOURCES = [{"name": "arithmetic", "split": "train", "n": 30}]


def test_the_pool_is_cut_from_what_the_sources_gave_and_validation_is_split_off():
    pool = draw_training_pool(SOURCES, n_train=10, n_val=4, seed=0)
    assert len(pool.drawn) == 30 and len(pool.pool) == 14
    assert len(pool.train) == 10 and len(pool.validation) == 4
    assert set(pool.train["problem"]) | set(pool.validation["problem"]) == set(pool.pool["problem"])
    assert list(pool.pool["problem"]) == list(pool.drawn["problem"][:14])
    assert draw_training_pool(SOURCES, n_train=10, n_val=4, seed=0).train["problem"] == pool.train["problem"]


def test_groups_drop_training_problems_and_report_no_leaks():
    pool = draw_training_pool(SOURCES, n_train=10, n_val=4, seed=0)
    # a group drawn from the training split with the training seed holds exactly the pool's problems
    drawn = draw_eval_groups({"same": SOURCES, "test": [{"name": "arithmetic", "split": "test", "n": 5}]},
                             pool.drawn, seed=0)
    assert len(drawn.groups["same"]) == 0 and drawn.redrawn["same"] == 30
    assert len(drawn.groups["test"]) == 5 and drawn.redrawn["test"] == 0
    assert drawn.n_leaks == 0
    lines = drawn.lines()
    assert lines[0].startswith("same: 0 problems") and "30 equal to a training problem" in lines[0]
    assert lines[-1].endswith(": 0")
