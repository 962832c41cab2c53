"""GSM8K answer extraction: the final number, however the model writes it."""

import pytest

from lora_lab.tasks.answers import answers_match, extract_answer, normalize_number, reference_answer


@pytest.mark.parametrize(("text", "expected"), [
    ("She has 3 apples, then 5, so 8", "8"),  # last number
    ("The total is 1,234 dollars", "1234"),  # thousands separators
    ("It costs $1,250.50 in all", "1250.5"),  # dollar sign, decimals, trailing zero
    ("The answer is 42.", "42"),  # sentence-final full stop
    ("The answer is 7.0", "7"),  # integral decimal
    ("Temperature fell to -5 degrees", "-5"),  # negative
    ("a loss of -$5 this week", "-5"),  # sign before the dollar
    ("about .5 of it", "0.5"),  # leading decimal point
    ("3 + 4 = 7\n#### 7", "7"),  # GSM8K marker
    ("#### 1,000\nthen 12 more words 99", "1000"),  # the marker wins over later numbers
    ("steps 1 2 3 #### $18.", "18"),
    ("#### -12.50", "-12.5"),
    ("no number here", None),
    ("####", None),
])
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


def test_reference_answer_reads_the_gsm8k_target():
    target = "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips.\n#### 72"
    assert reference_answer(target) == "72"


@pytest.mark.parametrize(("prediction", "reference", "match"), [
    ("So the answer is 72.", "72", True),
    ("#### 72", "72", True),
    ("72.00 clips", "72", True),
    ("$1,000", "1000", True),
    ("73", "72", False),
    ("I cannot tell", "72", False),
])
def test_answers_match(prediction, reference, match):
    assert answers_match(prediction, reference) is match


def test_normalize_number_rejects_non_numbers():
    assert normalize_number("-") is None and normalize_number(".") is None and normalize_number("") is None
