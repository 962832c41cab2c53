import numpy as np
import pytest
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace

from lora_lab.config.errors import ConfigError
from lora_lab.meta.histograms import (
    example_text,
    mean_embedding,
    normalize_rows,
    represent_dataset,
    represent_datasets,
    token_histogram,
)

VOCAB = {"[UNK]": 0, "the": 1, "cat": 2, "sat": 3, "on": 4, "mat": 5}


@pytest.fixture
def word_tokenizer():
    tokenizer = Tokenizer(WordLevel(VOCAB, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = Whitespace()
    return tokenizer


def test_token_histogram_counts_every_token(word_tokenizer):
    texts = ["the cat sat", "on the mat", "dog"]  # "dog" -> [UNK]
    counts = token_histogram(texts, word_tokenizer, vocab_size=6, batch_size=2)
    assert counts.dtype == np.float64
    np.testing.assert_array_equal(counts, [1, 2, 1, 1, 1, 1])


def test_transformers_fast_tokenizer_gives_same_histogram(word_tokenizer):
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(tokenizer_object=word_tokenizer, unk_token="[UNK]")
    texts = ["the cat sat on the mat"] * 3
    np.testing.assert_array_equal(
        token_histogram(texts, fast, vocab_size=6), token_histogram(texts, word_tokenizer, vocab_size=6)
    )


def test_token_id_beyond_vocab_is_named(word_tokenizer):
    with pytest.raises(ConfigError, match="token id 5"):
        token_histogram(["mat"], word_tokenizer, vocab_size=5)


def test_example_text_uses_first_output():
    assert example_text({"input": "Q?", "output": ["A1", "A2"]}) == "Q? A1"
    assert example_text({"input": "Q?", "output": "A"}, separator="\n") == "Q?\nA"


def test_mean_embedding_and_registry():
    def embed(batch):
        return np.array([[len(t), 1.0] for t in batch])

    vector = mean_embedding(["ab", "abcd"], embed, batch_size=1)
    np.testing.assert_allclose(vector, [3.0, 1.0])
    rows = represent_datasets("embedding", [["ab"], ["abcd"]], embed=embed)
    np.testing.assert_allclose(rows, [[2.0, 1.0], [4.0, 1.0]])
    with pytest.raises(ConfigError, match="choices: embedding, tokens"):
        represent_dataset("bag_of_words", ["x"])


def test_normalize_rows_rejects_empty_dataset():
    np.testing.assert_allclose(normalize_rows(np.array([[1.0, 3.0]])), [[0.25, 0.75]])
    with pytest.raises(ValueError, match="empty"):
        normalize_rows(np.array([[1.0, 0.0], [0.0, 0.0]]))
