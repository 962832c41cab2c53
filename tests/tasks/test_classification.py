"""Label parsing, answer → label mapping and macro-F1 of the classification tasks."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from lora_lab.config.errors import ConfigError, DataError
from lora_lab.config.validate import validate_config
from lora_lab.tasks.agnews import AgnewsSchema, AgnewsTask
from lora_lab.tasks.classification import macro_f1
from lora_lab.tasks.sst2 import Sst2Schema, Sst2Task


def sst2() -> Sst2Task:
    return Sst2Task(OmegaConf.structured(Sst2Schema))


def agnews() -> AgnewsTask:
    return AgnewsTask(OmegaConf.structured(AgnewsSchema))


@pytest.mark.parametrize(("value", "expected"), [(0, 0), (1, 1), ("1", 1), ("1.0", 1), ("Positive", 1), ("negative", 0)])
def test_sst2_labels(value, expected):
    assert sst2().parse_label(value, "f.tsv:2") == expected


@pytest.mark.parametrize(("value", "expected"), [("Sci/Tech", 3), ("sci/tech", 3), ("Technology", 3), (2, 2), ("World", 0)])
def test_agnews_labels(value, expected):
    assert agnews().parse_label(value, "f.tsv:2") == expected


@pytest.mark.parametrize("value", [-1, "-1", 2, "neutral", "", None])
def test_wrong_label_names_the_place_and_the_choices(value):
    with pytest.raises(DataError, match=r"f\.tsv:7: field 'label' has .*not a class.*choices: 0, 1, negative, positive"):
        sst2().parse_label(value, "f.tsv:7")


@pytest.mark.parametrize(("answer", "label"), [
    ("positive", 1), ("Negative.", 0), ("The sentiment is positive.", 1),
    ("negative, not positive", 0), ("I am not sure", -1), ("positively", -1),
])
def test_predicted_label_from_free_text(answer, label):
    assert sst2().predicted_label(answer) == label


def test_score_and_aggregate():
    task = sst2()
    examples = [task.example("good", 1, "x"), task.example("bad", 0, "x"), task.example("fine", 1, "x")]
    scores = [task.score(p, ex) for p, ex in zip(["positive", "positive", "negative"], examples, strict=True)]
    metrics = task.aggregate(scores)
    assert metrics["accuracy"] == pytest.approx(1 / 3)
    # class 0: tp 0, fp 1, fn 1 -> F1 0; class 1: tp 1, fp 1, fn 1 -> F1 0.5
    assert metrics["macro_f1"] == pytest.approx(0.25)


def test_macro_f1_hand_checked():
    gold = [0, 0, 0, 1, 1, 2]
    predicted = [0, 0, 1, 1, 2, -1]
    # class 0: 2tp/(2tp+fp+fn) = 4/5; class 1: 2/(2+1+1) = 1/2; class 2: 0
    assert macro_f1(gold, predicted) == pytest.approx((0.8 + 0.5 + 0.0) / 3)
    assert macro_f1([1, 1], [1, 1]) == 1.0


def test_example_keeps_bare_text_for_encoders():
    ex = sst2().example("  a   fine\tfilm ", "1", "x")
    assert ex.text == "a fine film" and ex.prompt.endswith("\n\na fine film")
    assert ex.choices == ["negative", "positive"] and ex.target == "positive" and ex.label == 1


def test_config_checks(tmp_path):
    from tests.helpers.task_cases import task_cfg

    with pytest.raises(ConfigError, match="task.label_words"):
        validate_config(task_cfg("sst2", "task.label_words=[good]"))
    with pytest.raises(ConfigError, match="task.num_labels"):
        validate_config(task_cfg("sst2", "task.num_labels=3", "task.label_words=[a,b,c]"))
    with pytest.raises(ConfigError, match="model.kind"):
        validate_config(task_cfg("gsm8k", "model.kind=sequence_classification"))
    cfg = validate_config(task_cfg("agnews", "model.kind=sequence_classification"))
    assert cfg.model.num_labels == 4  # the model yaml's num_labels follows the task for minilm_l6
