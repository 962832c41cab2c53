"""Rouge and exact match against hand-checked values and against rouge-score itself."""

import pytest
from rouge_score import rouge_scorer

from lora_lab.tasks.rouge import exact_match, normalize_answer, rouge_f

PRED, REF = "the cat sat on the mat", "the cat is on the mat"


def test_rouge_hand_checked():
    scores = rouge_f(PRED, REF)
    # unigrams: 5 of 6 shared each way; bigrams: the-cat, on-the, the-mat = 3 of 5; LCS "the cat on the mat" = 5
    assert scores["rouge1"] == pytest.approx(5 / 6)
    assert scores["rouge2"] == pytest.approx(3 / 5)
    assert scores["rougeL"] == pytest.approx(5 / 6)


@pytest.mark.parametrize(("prediction", "reference"), [
    (PRED, REF),
    ("Police report a rise in burglaries", "Burglaries reported rising, police say"),
    ("India wins the cricket series 3-1", "India clinch series against England"),
    ("", "something"),
])
def test_rouge_equals_rouge_score_with_stemming(prediction, reference):
    direct = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True).score(reference, prediction)
    ours = rouge_f(prediction, reference)
    for key in ours:
        assert ours[key] == pytest.approx(direct[key].fmeasure)


def test_stemming_is_on():
    assert rouge_f("reports", "reported", ("rougeL",))["rougeL"] == 1.0


def test_best_reference_counts():
    assert rouge_f("a b c", ["x y z", "a b c"], ("rougeL",))["rougeL"] == 1.0


@pytest.mark.parametrize(("prediction", "reference", "expected"), [
    ("The Eiffel Tower.", "eiffel tower", 1.0),
    ("  an   apple ", "Apple!", 1.0),
    ("[14, 29]", "[14, 29]", 1.0),
    ("14, 29", "29, 14", 0.0),
    ("Yes", ["No", "yes."], 1.0),
])
def test_exact_match_normalised(prediction, reference, expected):
    assert exact_match(prediction, reference) == expected


def test_normalize_answer():
    assert normalize_answer("The  Quick, brown fox!") == "quick brown fox"
