import json

import pytest
import torch

from lora_lab.config.errors import ConfigError, DataError
from lora_lab.meta.bank import (
    BankValidationError,
    load_bank,
    lots_of_loras_task,
    write_bank_index,
)
from tests.helpers.meta_adapters import BASE_MODEL, adapter_config, random_factors, write_member


def test_load_bank_reads_members_in_order(make_bank):
    root, _ = make_bank(4)
    bank = load_bank(root)
    assert bank.names == ["task000", "task001", "task002", "task003"]
    assert bank.sources == ["src0", "src0", "src1", "src1"]
    assert bank.adapter_dirs[2] == (root / "adapters" / "task002").resolve()
    assert (bank.rank, bank.lora_alpha, bank.target_modules) == (2, 4, ("q_proj", "v_proj"))
    assert bank.members[1].dataset == {"id": 1} and bank.index("task003") == 3 and len(bank) == 4


@pytest.mark.parametrize(
    "overrides, field, value, expected",
    [
        ({"r": 4}, "'r'", "4", "2"),
        ({"lora_alpha": 8}, "'lora_alpha'", "8", "4"),
        (
            {"target_modules": ["q_proj", "k_proj"]},
            "'target_modules'",
            "('k_proj', 'q_proj')",
            "('q_proj', 'v_proj')",
        ),
        (
            {"base_model_name_or_path": "other/model"},
            "'base_model_name_or_path'",
            "'other/model'",
            f"'{BASE_MODEL}'",
        ),
    ],
)
def test_mismatched_member_is_named_with_field_value_and_expectation(
    make_bank, overrides, field, value, expected
):
    root, _ = make_bank(3, configs={2: overrides})
    with pytest.raises(BankValidationError) as error:
        load_bank(root)
    message = str(error.value)
    assert (
        "'task002'" in message
        and f"field {field} is {value}" in message
        and f"expected {expected}" in message
    )


def test_target_module_order_does_not_matter(make_bank):
    root, _ = make_bank(2, configs={1: {"target_modules": ["v_proj", "q_proj"]}})
    assert load_bank(root).target_modules == ("q_proj", "v_proj")


def test_tensor_shape_mismatch_is_named(make_bank):
    root, _ = make_bank(3)
    tensors = random_factors(seed=5)
    key = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
    tensors[key] = torch.zeros(2, 9)
    write_member(root / "adapters" / "task001", tensors, adapter_config())
    with pytest.raises(
        BankValidationError, match=rf"'task001': tensor '{key}' has shape \(2, 9\), expected \(2, 8\)"
    ):
        load_bank(root)
    assert load_bank(root, check_tensors=False).names[1] == "task001"


def test_bad_index_files(tmp_path, make_bank):
    with pytest.raises(DataError, match="bank.json: missing"):
        load_bank(tmp_path)
    (tmp_path / "bank.json").write_text("{not json")
    with pytest.raises(DataError, match="line 1: invalid JSON"):
        load_bank(tmp_path)
    root, _ = make_bank(2)
    index = json.loads((root / "bank.json").read_text())
    index["members"][1]["name"] = "task000"
    (root / "bank.json").write_text(json.dumps(index))
    with pytest.raises(DataError, match="name 'task000' appears twice"):
        load_bank(root)
    write_bank_index(root, BASE_MODEL, [{"name": "x", "adapter": "adapters/missing"}])
    with pytest.raises(DataError, match="adapter_config.json: missing"):
        load_bank(root)


def test_lots_of_loras_task_names():
    assert lots_of_loras_task(81) == "task081"
    assert lots_of_loras_task("task1342_amazon_us_reviews_title") == "task1342"
    with pytest.raises(DataError, match="expected a task number"):
        lots_of_loras_task("summarise")


def test_bank_member_source_comes_from_config_or_the_sni_task_name() -> None:
    from lora_lab.meta.from_runs import member_source

    assert member_source({"name": "sni", "sni_task": "task1147_country_currency"}) == "country"
    assert member_source({"name": "sni", "sni_task": "task1147_country_currency", "source": "geo"}) == "geo"
    assert member_source({"name": "sst2"}) is None


def test_a_bank_refuses_a_model_it_was_not_trained_on(tmp_path, make_bank):
    from omegaconf import OmegaConf

    from lora_lab.meta.bank import check_bank_model

    bank = load_bank(make_bank(2)[0])
    check_bank_model(bank, OmegaConf.create({"name": "x", "hub_id": BASE_MODEL}))  # the hub id matches
    with pytest.raises(ConfigError, match="model.*trained on"):
        check_bank_model(bank, OmegaConf.create({"name": "smollm2_135m", "hub_id": "HuggingFaceTB/other"}))


def test_study_refuses_unknown_settings_before_loading_anything(tmp_path):
    from lora_lab.meta.study import run_study, setting_names

    assert "normalized/js" in setting_names(False) and "nearest/embedding" not in setting_names(False)
    with pytest.raises(ConfigError, match=r"--settings.*normalized/jss.*choices: base/wd"):
        run_study(tmp_path / "no_bank", ["t"], [], eval_limit=1, only=["normalized/jss"])


def _fake_job(job, model: str, task: str) -> None:
    (job / "adapter").mkdir(parents=True)
    (job / "adapter" / "adapter_config.json").write_text("{}")
    (job / ".hydra").mkdir()
    (job / ".hydra" / "config.yaml").write_text(f"model:\n  name: {model}\ntask:\n  name: arith\n  sni_task: {task}\n")
    (job / "metrics.json").write_text(json.dumps({"status": "ok"}))


@pytest.mark.parametrize("jobs,problem", [
    ({"0": ("tiny", "taskA"), "1": ("other", "taskB")}, "different base models"),
    ({"0": ("tiny", "taskA"), "1": ("tiny", "taskA")}, "member name 'taskA' is also job"),
])
def test_bank_from_runs_refuses_before_copying_anything(tmp_path, jobs, problem):
    from lora_lab.meta.from_runs import build_bank_from_runs

    for number, (model, task) in jobs.items():
        _fake_job(tmp_path / "sweep" / number, model, task)
    with pytest.raises(DataError, match=problem):
        build_bank_from_runs(tmp_path / "sweep", tmp_path / "bank")
    assert not (tmp_path / "bank").exists()  # nothing half-written


def test_study_command_line_bad_input_is_one_line_and_exit_2(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "lora_lab.meta.study", str(tmp_path), "--targets", "t",
                           "--settings", "normalized/jss"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "lora_lab.meta.study: config error: --settings=['normalized/jss']: unknown settings" in proc.stderr
    assert "Traceback" not in proc.stderr


def _two_job_sweep(root):
    for number, task in (("0", "taskA"), ("1", "taskB")):
        _fake_job(root / "sweep" / number, "tiny", task)
    return root / "sweep"


def test_from_runs_refuses_an_existing_bank_unless_forced_and_then_replaces_it_whole(tmp_path, capsys):
    from lora_lab.meta.from_runs import build_bank_from_runs, main

    sweep, bank = _two_job_sweep(tmp_path), tmp_path / "bank"
    build_bank_from_runs(sweep, bank)
    first = (bank / "bank.json").read_text()
    (bank / "notes.txt").write_text("from the first build")
    main([str(sweep), str(bank)])  # the same command again: the bank of these runs is there, nothing to do
    assert "already holds the bank of these runs" in capsys.readouterr().err
    (sweep / "1" / "metrics.json").write_text(json.dumps({"status": "failed"}))  # the runs changed
    with pytest.raises(SystemExit) as exit_info:
        main([str(sweep), str(bank)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.endswith(f"lora_lab.meta.from_runs: config error: bank_dir='{bank}': already holds a bank "
                        "(bank.json); pass --force to replace it\n")
    assert (bank / "bank.json").read_text() == first and (bank / "notes.txt").exists()
    main([str(sweep), str(bank), "--force"])
    assert [m["name"] for m in json.loads((bank / "bank.json").read_text())["members"]] == ["taskA"]
    assert sorted(p.name for p in bank.iterdir()) == ["adapters", "bank.json", "made_from.json"]  # replaced whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bank", "sweep"]  # no temp folder left


def test_from_runs_refuses_a_non_empty_folder_that_is_not_a_bank(tmp_path):
    from lora_lab.meta.from_runs import build_bank_from_runs

    (tmp_path / "bank").mkdir()
    (tmp_path / "bank" / "results.csv").write_text("keep me")
    with pytest.raises(ConfigError, match="non-empty folder without a bank"):
        build_bank_from_runs(_two_job_sweep(tmp_path), tmp_path / "bank")


def test_a_failed_forced_rebuild_keeps_the_old_bank(tmp_path, monkeypatch):
    import errno
    import shutil

    from lora_lab.config.errors import StorageError
    from lora_lab.meta import from_runs

    sweep, bank = _two_job_sweep(tmp_path), tmp_path / "bank"
    from_runs.build_bank_from_runs(sweep, bank)
    before = sorted(str(p.relative_to(bank)) for p in bank.rglob("*"))
    calls, copytree = [], shutil.copytree

    def copy_then_fill_the_disk(src, dst, **kwargs):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return copytree(src, dst, **kwargs)

    monkeypatch.setattr(from_runs.shutil, "copytree", copy_then_fill_the_disk)
    with pytest.raises(StorageError, match=rf"^{bank}/adapters/taskB: cannot write \(No space left on device\)"):
        from_runs.build_bank_from_runs(sweep, bank, force=True)
    assert sorted(str(p.relative_to(bank)) for p in bank.rglob("*")) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bank", "sweep"]


def _truncate(path, keep=-16):
    path.write_bytes(path.read_bytes()[:keep])


def _corrupt_header(path):
    data = bytearray(path.read_bytes())
    data[8:16] = b"\xff" * 8
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(("fault", "problem"), [
    (lambda d: _truncate(d / "adapter_model.safetensors"), r"adapter_model.safetensors: truncated: tensor"),
    (lambda d: _truncate(d / "adapter_model.safetensors", 100),
     r"adapter_model.safetensors: corrupt or truncated safetensors file \(header of \d+ bytes, file of 100\)"),
    (lambda d: (d / "adapter_model.safetensors").write_bytes(b"\x01\x02"),
     r"adapter_model.safetensors: truncated safetensors file \(2 bytes, no header\)"),
    (lambda d: _corrupt_header(d / "adapter_model.safetensors"),
     r"adapter_model.safetensors: corrupt safetensors header"),
    (lambda d: (d / "adapter_config.json").write_text("[1, 2]"), r"adapter_config.json: expected a JSON object"),
    (lambda d: (d / "adapter_config.json").write_text('{"r": 2,'), r"adapter_config.json: line 1: invalid JSON"),
    (lambda d: (d / "adapter_model.safetensors").unlink(), r"adapter_model.safetensors: missing"),
], ids=["truncated", "cut_in_header", "two_bytes", "corrupt_header", "config_not_object", "config_bad_json", "no_weights"])
def test_a_broken_bank_member_is_one_line_naming_its_file(make_bank, fault, problem):
    root, _ = make_bank(3)
    member = root / "adapters" / "task001"
    fault(member)
    with pytest.raises(DataError, match=rf"^{member}/{problem}"):
        load_bank(root)


@pytest.mark.parametrize(("index", "problem"), [
    ([], "expected a JSON object, got list"),
    ({"base_model": "b", "members": {"a": 1}}, "field 'members' must be a non-empty list"),
    ({"base_model": "b", "members": ["adapters/a"]}, r"members\[0\] is not an object"),
    ({"base_model": "b", "members": [{"name": "a", "adapter": 3}]}, r"members\[0\]: field 'adapter' must be"),
])
def test_a_malformed_bank_index_is_one_line(tmp_path, index, problem):
    (tmp_path / "bank.json").write_text(json.dumps(index))
    with pytest.raises(DataError, match=rf"^{tmp_path / 'bank.json'}: {problem}"):
        load_bank(tmp_path)


def test_from_runs_names_every_job_it_leaves_out_and_exits_1_on_an_unreadable_one(tmp_path, capsys):
    import shutil

    from lora_lab.meta.from_runs import main

    sweep, bank = _two_job_sweep(tmp_path), tmp_path / "bank"
    for number, task in (("2", "taskC"), ("3", "taskD"), ("4", "taskE"), ("5", "taskF")):
        _fake_job(sweep / number, "tiny", task)
    (sweep / "2" / "metrics.json").write_text('{"status": "ok", "sco')  # truncated
    (sweep / "3" / "metrics.json").write_text(json.dumps({"status": "interrupted"}))
    (sweep / "4" / "metrics.json").unlink()  # killed before it wrote any
    shutil.rmtree(sweep / "5" / "adapter")
    with pytest.raises(SystemExit) as exit_info:
        main([str(sweep), str(bank)])
    assert exit_info.value.code == 1
    assert [m["name"] for m in json.loads((bank / "bank.json").read_text())["members"]] == ["taskA", "taskB"]
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"lora_lab.meta.from_runs: left out {sweep / '2'}: metrics.json: not valid JSON")
    assert err[1:] == [f"lora_lab.meta.from_runs: left out {sweep / '3'}: status interrupted",
                       f"lora_lab.meta.from_runs: left out {sweep / '4'}: no metrics.json",
                       f"lora_lab.meta.from_runs: left out {sweep / '5'}: no adapter/"]


def test_every_unusable_member_is_named_in_the_one_error(make_bank):
    """A bank is refused whole, but the one line names every bad member, not only the first."""
    root, _ = make_bank(4)
    (root / "adapters" / "task001" / "adapter_model.safetensors").write_bytes(b"\x00\x01")
    (root / "adapters" / "task003" / "adapter_config.json").write_text("[1]")
    with pytest.raises(DataError) as caught:
        load_bank(root)
    message = str(caught.value)
    assert message.startswith("2 of 4 bank members are unusable: ") and "\n" not in message
    assert "task001/adapter_model.safetensors" in message and "task003/adapter_config.json" in message
