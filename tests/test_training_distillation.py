"""The distillation trainer through mathkit.training.train: config checks, the logged terms in
metrics.jsonl, frozen teachers, trained-but-unsaved projections, exact resume, the student's
save/load round trip, a tiny Llama student, and TRL's on-policy option."""

import copy
import shutil

import pytest
import torch
import trl
from safetensors.torch import load_file
from transformers import LlamaConfig, LlamaForCausalLM

from mathkit.data.arithmetic import generate_examples
from mathkit.errors import ParamsError
from mathkit.jsonl import read_jsonl
from mathkit.models import build_decoder, load, save
from mathkit.models.char_tokenizer import build_char_tokenizer
from mathkit.training import train
from mathkit.training.config import build_sft_config
from mathkit.training.distillation import (
    PROJECTIONS_FILE,
    DistillationConfig,
    DistillationSettingError,
    DistillationSFTTrainer,
    distillation_trainer,
    on_policy_args,
)
from tests.tiny_llama import build_tokenizer, word_problems

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
TINY_TEACHER = dict(hidden_size=48, num_hidden_layers=3, num_attention_heads=4, intermediate_size=96)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tokenizer():
    return build_char_tokenizer()


@pytest.fixture(scope="module")
def records():
    return generate_examples(60, min_digits=1, max_digits=2, seed=0)


def decoder(tokenizer, seed, size="small", **shape):
    torch.manual_seed(seed)
    return build_decoder(size, tokenizer, **shape)


def settings(**overrides):
    base = dict(per_device_train_batch_size=8, per_device_eval_batch_size=16, learning_rate=3e-3,
                max_steps=3, warmup_steps=0, logging_steps=1, save_steps=3, seed=0)
    return {**base, **overrides}


def snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_untouched(teacher, before):
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    after = teacher.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def train_rows(result):
    return [r for r in read_jsonl(result.metrics_path) if r["kind"] == "train"]


# --- the config ---------------------------------------------------------------------------------

def test_config_from_a_params_block():
    cfg = DistillationConfig.from_dict({"kd": "reverse", "temperature": "4", "hidden_weight": 0.5,
                                        "layer_pairs": {2: 4, 4: 8}, "teacher_weights": [3, 1]})
    assert (cfg.kd, cfg.temperature, cfg.ce_weight, cfg.kd_weight) == ("reverse", 4.0, 1.0, 1.0)
    assert cfg.layer_pairs == ((2, 4), (4, 8)) and cfg.teacher_weights == (3.0, 1.0)
    assert cfg.as_dict()["layer_pairs"] == [[2, 4], [4, 8]] and cfg.needs_hidden_states
    assert DistillationConfig.from_dict(cfg.as_dict()) == cfg  # results.json's values build it again
    assert DistillationConfig.from_dict({"method": "on_policy"}).ce_weight == 0.0
    assert DistillationConfig.from_dict(None) == DistillationConfig()


@pytest.mark.parametrize("block, key, words", [
    ({"temprature": 2.0}, "temprature", "did you mean 'temperature'"),
    ({"kd": "sideways"}, "kd", "use one of forward, reverse, none"),
    ({"method": "online"}, "method", "use one of off_policy, on_policy"),
    ({"temperature": 0}, "temperature", "must be > 0"),
    ({"ce_weight": -1}, "ce_weight", "must be >= 0"),
    ({"kd_weight": "lots"}, "kd_weight", "expected a finite number"),
    ({"kd_weight": 0}, "kd_weight", "write kd: none"),
    ({"hidden_weight": 1.0}, "layer_pairs", "needs layer pairs"),
    ({"layer_pairs": [[1, 2]]}, "hidden_weight", "would be unused"),
    ({"hidden_weight": 1.0, "layer_pairs": [[1, -2]]}, "layer_pairs", "integers >= 0"),
    ({"hidden_weight": 1.0, "layer_pairs": [[1, 2], [1, 2]]}, "layer_pairs", "repeats a pair"),
    ({"hidden_weight": 1.0, "layer_pairs": [1, 2]}, "layer_pairs", "expected [[student_layer"),
    ({"teacher_weights": [0, 0]}, "teacher_weights", "not all 0"),
    ({"kd": "none"}, "kd", "nothing is distilled"),
    ({"method": "on_policy", "contrastive_weight": 0.1}, "contrastive_weight", "on_policy"),
    ({"method": "on_policy", "ce_weight": 1.0}, "ce_weight", "on_policy"),
    ({"method": "on_policy", "kd": "none"}, "kd", "needs a KL direction"),
    ({"max_completion_length": 0}, "max_completion_length", "positive integer"),
])
def test_bad_configs_name_the_key(block, key, words):
    with pytest.raises(DistillationSettingError) as err:
        DistillationConfig.from_dict(block)
    assert f"distillation.{key}" in str(err.value) and words in str(err.value)
    assert isinstance(err.value, ParamsError)


def test_teachers_must_share_the_vocabulary_and_have_the_paired_layers(tokenizer, records, tmp_path):
    student = decoder(tokenizer, 1, **TINY)
    other_vocab = decoder(tokenizer, 0, **TINY, vocab_size=len(tokenizer) + 3)
    with pytest.raises(ParamsError, match="vocab_size .* must share one tokenizer"):
        train(student, tokenizer, records[:16], None, output_dir=tmp_path / "a", training=settings(max_steps=1),
              trainer_class=distillation_trainer(other_vocab, {}))
    teacher = decoder(tokenizer, 0, **TINY_TEACHER)
    with pytest.raises(DistillationSettingError, match=r"the student has 2 layers, so its hidden states are numbered 0"):
        train(student, tokenizer, records[:16], None, output_dir=tmp_path / "b", training=settings(max_steps=1),
              trainer_class=distillation_trainer(teacher, {"hidden_weight": 1.0, "layer_pairs": [[3, 3]]}))
    with pytest.raises(DistillationSettingError, match="2 weights for 1 teachers"):
        train(student, tokenizer, records[:16], None, output_dir=tmp_path / "c", training=settings(max_steps=1),
              trainer_class=distillation_trainer([teacher], {"teacher_weights": [1, 1]}))
    with pytest.raises(ParamsError, match="at least one teacher"):
        distillation_trainer([], {})


# --- the small decoder ----------------------------------------------------------------------------

def test_a_copy_of_the_student_as_teacher_adds_nothing_to_the_sft_loss(tokenizer, records, tmp_path):
    """Wiring: KD and hidden terms are exactly 0 against an identical teacher, so the loss is the
    plain fine-tuning loss on the same first batch."""
    student = decoder(tokenizer, 1, **TINY)
    teacher = copy.deepcopy(student)
    cfg = {"kd": "forward", "hidden_weight": 1.0, "layer_pairs": [[1, 1], [2, 2]]}
    run = train(student, tokenizer, records[:16], None, output_dir=tmp_path / "kd", training=settings(max_steps=1),
                trainer_class=distillation_trainer(teacher, cfg))
    plain = train(decoder(tokenizer, 1, **TINY), tokenizer, records[:16], None, output_dir=tmp_path / "sft",
                  training=settings(max_steps=1))
    first = train_rows(run)[0]
    assert first["kd_loss"] == pytest.approx(0.0, abs=1e-6) and first["hidden_loss"] == pytest.approx(0.0, abs=1e-9)
    assert first["loss"] == pytest.approx(first["ce_loss"], rel=1e-6)
    assert first["loss"] == pytest.approx(train_rows(plain)[0]["loss"], rel=1e-5)


def test_large_teacher_small_student_logs_every_term_and_saves_only_the_student(tokenizer, records, tmp_path):
    teacher = decoder(tokenizer, 0, "large")
    student = decoder(tokenizer, 1, "small")
    before = snapshot(teacher)
    cfg = {"kd": "reverse", "temperature": 2.0, "kd_weight": 0.5, "hidden_weight": 1.0,
           "layer_pairs": [[2, 4], [4, 8]], "contrastive_weight": 0.1}
    trainer_class = distillation_trainer(teacher, cfg)
    assert issubclass(trainer_class, DistillationSFTTrainer)
    result = train(student, tokenizer, records[:48], records[48:], output_dir=tmp_path / "run",
                   training=settings(eval_steps=3), trainer_class=trainer_class)

    rows = train_rows(result)
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all({"loss", "ce_loss", "kd_loss", "hidden_loss", "contrastive_loss"} <= set(r) for r in rows)
    for r in rows:  # the logged total is the weighted sum of the logged terms
        assert r["loss"] == pytest.approx(r["ce_loss"] + 0.5 * r["kd_loss"] + r["hidden_loss"]
                                          + 0.1 * r["contrastive_loss"], rel=1e-4)
    assert rows[-1]["hidden_loss"] < rows[0]["hidden_loss"]  # the projections (and student) learn to match
    evals = [r for r in read_jsonl(result.metrics_path) if r["kind"] == "eval"]
    assert len(evals) == 1 and {"eval_loss", "eval_ce_loss", "eval_kd_loss", "eval_hidden_loss"} <= set(evals[0])

    assert_untouched(teacher, before)  # frozen, no gradients, bit-identical

    # The checkpoint holds the student's weights only; the projections lie beside them.
    checkpoint = result.last_checkpoint
    student_keys = set(load_file(checkpoint / "model.safetensors"))
    assert student_keys and not any("projection" in k or k.startswith(("hidden.", "pooled.")) for k in student_keys)
    projections = load_file(checkpoint / PROJECTIONS_FILE)
    assert {"hidden.0.0.weight", "hidden.0.1.weight", "pooled.0.weight"} <= set(projections)
    assert projections["hidden.0.0.weight"].shape == (320, 128)  # student width 128 -> teacher width 320

    # The student saves and loads like any mathkit model, with identical logits.
    save(student, tokenizer, tmp_path / "student")
    assert set(load_file(tmp_path / "student" / "model.safetensors")) == student_keys
    reloaded, _ = load(tmp_path / "student")
    ids = torch.tensor([tokenizer("12+34=")["input_ids"]])
    with torch.no_grad():
        torch.testing.assert_close(reloaded(ids).logits, student.eval()(ids).logits, rtol=0, atol=0)


def test_resumed_run_restores_the_projections_and_ends_like_an_uninterrupted_one(tokenizer, records, tmp_path):
    cfg = {"hidden_weight": 1.0, "layer_pairs": [[1, 2], [2, 3]]}
    run_settings = settings(max_steps=4, save_steps=2, per_device_train_batch_size=4)

    def run(folder):
        return train(decoder(tokenizer, 1, **TINY), tokenizer, records[:32], None, output_dir=folder,
                     training=run_settings, trainer_class=distillation_trainer(decoder(tokenizer, 0, **TINY_TEACHER), cfg))

    full = run(tmp_path / "full")
    (tmp_path / "resumed").mkdir()
    shutil.copytree(tmp_path / "full" / "checkpoint-2", tmp_path / "resumed" / "checkpoint-2")
    again = run(tmp_path / "resumed")
    assert again.resumed_from == tmp_path / "resumed" / "checkpoint-2" and again.global_step == 4
    for name in ("model.safetensors", PROJECTIONS_FILE):
        expected, got = load_file(full.last_checkpoint / name), load_file(again.last_checkpoint / name)
        for key in expected:
            torch.testing.assert_close(got[key], expected[key], rtol=1e-6, atol=1e-7)


# --- a Llama-style student -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def llama_tokenizer():
    return build_tokenizer()


def tiny_llama(tokenizer, hidden, layers, seed):
    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(
        hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=len(tokenizer), max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=True))


def test_llama_student_with_two_weighted_teachers(llama_tokenizer, tmp_path):
    teachers = [tiny_llama(llama_tokenizer, 48, 3, 0), tiny_llama(llama_tokenizer, 64, 2, 2)]
    before = [snapshot(t) for t in teachers]
    student = tiny_llama(llama_tokenizer, 32, 2, 1)
    cfg = {"kd": "forward", "teacher_weights": [3, 1], "hidden_weight": 1.0, "layer_pairs": [[2, 2]],
           "contrastive_weight": 0.5}
    result = train(student, llama_tokenizer, word_problems(16), None, output_dir=tmp_path,
                   training=settings(per_device_train_batch_size=4, gradient_accumulation_steps=2, max_steps=2,
                                     learning_rate=1e-3, save_steps=2),
                   trainer_class=distillation_trainer(teachers, cfg))
    rows = train_rows(result)
    assert len(rows) == 2 and all(r["kd_loss"] > 0 and r["hidden_loss"] > 0 and "contrastive_loss" in r for r in rows)
    for teacher, state in zip(teachers, before):
        assert_untouched(teacher, state)
    projections = load_file(result.last_checkpoint / PROJECTIONS_FILE)
    assert projections["hidden.0.0.weight"].shape == (48, 32) and projections["hidden.1.0.weight"].shape == (64, 32)


def test_on_policy_goes_through_trls_distillation_trainer(llama_tokenizer, tmp_path):
    cfg = DistillationConfig.from_dict({"method": "on_policy", "kd": "reverse", "temperature": 1.5,
                                        "max_completion_length": 6})
    sft = build_sft_config(settings(max_steps=2, learning_rate=1e-3), output_dir=tmp_path, has_eval=False, quiet=True)
    args = on_policy_args(sft, cfg)
    assert isinstance(args, trl.DistillationConfig)
    assert (args.beta, args.temperature, args.max_completion_length) == (1.0, 1.5, 6)
    assert (args.max_steps, args.learning_rate, args.bf16, args.seed) == (2, 1e-3, sft.bf16, 0)

    teacher = tiny_llama(llama_tokenizer, 48, 3, 0)
    before = snapshot(teacher)
    student = tiny_llama(llama_tokenizer, 32, 2, 1)
    start = snapshot(student)
    trainer_class = distillation_trainer(teacher, cfg)
    assert issubclass(trainer_class, trl.DistillationTrainer)
    result = train(student, llama_tokenizer, word_problems(8), None, output_dir=tmp_path,
                   training=settings(per_device_train_batch_size=4, max_steps=2, learning_rate=1e-3, save_steps=2),
                   trainer_class=trainer_class)
    rows = train_rows(result)
    assert [r["step"] for r in rows] == [1, 2] and all(r["loss"] > 0 for r in rows)
    assert all(r["completions/max_length"] <= 6 for r in rows)  # the student sampled its own completions
    assert any(not torch.equal(start[k], v) for k, v in student.state_dict().items())
    assert_untouched(teacher, before)
    with pytest.raises(ParamsError, match="takes one teacher"):
        distillation_trainer([teacher, teacher], cfg)
