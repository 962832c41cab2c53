"""The hub code path (no network: `datasets.load_dataset` is replaced by a fake that records its call)."""

from __future__ import annotations

import datasets
import pytest

from lora_lab.config.errors import ConfigError, DataError
from lora_lab.config.validate import validate_config
from lora_lab.tasks import TASKS
from tests.helpers.lab_helpers import compose_cfg

ROWS = {
    ("stanfordnlp/sst2", None, "validation"): [{"idx": 0, "sentence": "a gem ", "label": 1}],
    ("stanfordnlp/sst2", None, "test"): [{"idx": 0, "sentence": "unlabelled", "label": -1}],
    ("fancyzhx/ag_news", None, "test"): [{"text": "Stocks rally #36;5", "label": 2}],
    ("EdinburghNLP/xsum", None, "test"): [{"document": "The  BBC article.", "summary": "A summary.", "id": "1"}],
    ("Salesforce/wikitext", "wikitext-2-raw-v1", "test"): [{"text": ""}, {"text": " = T = \n"}, {"text": " Words .\n"}],
    ("Lots-of-LoRAs/task1087_two_number_sum", None, "test"): [
        {"input": "Definition: Sum.\n\nNow complete the following example -\nInput: [1, 2], target=3\nOutput:",
         "output": "[1, 2]", "id": "task1087-x"}],
}


@pytest.fixture
def fake_hub(monkeypatch):
    calls = []

    def load_dataset(path, name=None, split=None):
        calls.append((path, name, split))
        if (path, name, split) not in ROWS:
            raise FileNotFoundError(f"Couldn't find '{path}' on the Hub")
        return ROWS[(path, name, split)]

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    monkeypatch.delenv("LORA_LAB_DATA", raising=False)
    return calls


def task(name: str, *extra: str):
    cfg = validate_config(compose_cfg(["model=tiny", f"task={name}", *extra]))
    return TASKS.get(name)(cfg.task)


def test_classification_from_the_hub(fake_hub):
    ex = task("sst2").load_split("validation")[0]
    assert (ex.text, ex.label, ex.target) == ("a gem", 1, "positive")
    assert task("agnews").load_split("test")[0].text == "Stocks rally $5"
    with pytest.raises(DataError, match=r"stanfordnlp/sst2\[test\]\[0\]: field 'label' has -1"):
        task("sst2").load_split("test")  # SST-2's test split is unlabelled


def test_news_summary_reads_xsum_fields(fake_hub):
    ex = task("news_summary").load_split("test")[0]
    assert ex.target == "A summary." and ex.prompt.endswith("\n\nThe BBC article.")


def test_wikitext2_rows_lose_their_newlines(fake_hub):
    assert task("wikitext2").load_split("test")[0].target == "\n = T = \n Words ."


def test_sni_uses_the_bank_dataset_prompt(fake_hub):
    ex = task("sni").load_split("test")[0]
    assert fake_hub[-1] == ("Lots-of-LoRAs/task1087_two_number_sum", None, "test")
    assert ex.prompt.startswith("Definition: Sum.") and ex.target == "[1, 2]"


def test_offline_hub_failure_says_what_to_do(fake_hub):
    with pytest.raises(ConfigError, match=r"could not load hub dataset 'stanfordnlp/imdb'.*point task.data_dir"):
        task("imdb").load_split("test")
