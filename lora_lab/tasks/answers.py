"""Extracting and comparing final numeric answers (GSM8K's `#### N` convention, free-form generations)."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_NUMBER = re.compile(r"-?\$?\s?\d[\d,]*(?:\.\d+)?|-?\$?\s?\.\d+")
_MARKER = "####"


def normalize_number(text: str) -> str | None:
    """'$1,234.50' → '1234.5'; '7.' → '7'; returns None when there is no number."""
    cleaned = text.replace(",", "").replace("$", "").replace(" ", "").rstrip(".")
    if not cleaned or cleaned in {"-", "."}:
        return None
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        return None
    if value == value.to_integral_value():
        return str(value.quantize(Decimal(1)))
    return format(value.normalize(), "f")


def extract_answer(text: str) -> str | None:
    """The number after the last `####` if present, else the last number in the text."""
    if _MARKER in text:
        after = text.rsplit(_MARKER, 1)[1]
        found = _NUMBER.findall(after)
        if found:
            return normalize_number(found[0])
    found = _NUMBER.findall(text)
    return normalize_number(found[-1]) if found else None


def final_answer(text: str) -> str | None:
    """The number after the last `####`, or None when there is no marker or no number after it."""
    if _MARKER not in text:
        return None
    found = _NUMBER.findall(text.rsplit(_MARKER, 1)[1])
    return normalize_number(found[0]) if found else None


def reference_answer(target: str) -> str | None:
    """GSM8K targets end in `#### N`; plain numeric targets are themselves the answer."""
    return extract_answer(target)


def answers_match(prediction: str, reference: str) -> bool:
    predicted = extract_answer(prediction)
    return predicted is not None and predicted == normalize_number(str(reference))
