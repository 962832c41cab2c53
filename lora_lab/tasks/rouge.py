"""Text-overlap scores for generation tasks: Rouge F-measures (rouge-score, Porter stemming) and exact match.

Stemming on, as in the Rouge reference script and Super-NaturalInstructions' own evaluation, so "reports" and
"reported" match. Scores are in [0, 1]; with several references the best one counts (SNI's convention).
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from functools import lru_cache

from rouge_score import rouge_scorer

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.IGNORECASE)


@lru_cache(maxsize=8)
def _scorer(types: tuple[str, ...]) -> rouge_scorer.RougeScorer:
    return rouge_scorer.RougeScorer(list(types), use_stemmer=True)


def _references(reference: str | Sequence[str]) -> list[str]:
    return [reference] if isinstance(reference, str) else [str(r) for r in reference] or [""]


def rouge_f(prediction: str, reference: str | Sequence[str], types: Sequence[str] = ROUGE_TYPES) -> dict[str, float]:
    """F-measure per Rouge type, the best over the references."""
    scorer = _scorer(tuple(types))
    best = {t: 0.0 for t in types}
    for ref in _references(reference):
        scores = scorer.score(ref, prediction)  # rouge-score takes (target, prediction)
        for t in types:
            best[t] = max(best[t], scores[t].fmeasure)
    return best


def normalize_answer(text: str) -> str:
    """Lower case, drop punctuation and articles, squeeze whitespace (the SQuAD / SNI normalisation)."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, reference: str | Sequence[str]) -> float:
    return float(any(normalize_answer(prediction) == normalize_answer(r) for r in _references(reference)))
