"""lora-lab installs as a real package: the wheel carries the configs and the sweeper plugin, and the installed
command runs from any folder without the source tree on the path."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv holding only the built wheel; its dependencies come from this environment's site-packages
    through a plain path entry (a .pth line), which does not activate this checkout's editable install."""
    work = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(ROOT),
                    "-w", str(work / "dist")], check=True, capture_output=True, text=True)
    wheel = next((work / "dist").glob("lora_lab-*.whl"))
    env_dir = work / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", str(wheel)],
                   check=True, capture_output=True, text=True)
    return env_dir


def run(env_dir: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "LORA_LAB_OUTPUTS": str(cwd / "outputs")}
    env.pop("PYTHONPATH", None)
    return subprocess.run([str(env_dir / "bin" / args[0]), *args[1:]], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def test_the_wheel_ships_the_config_tree(installed: Path, tmp_path: Path) -> None:
    code = "import lora_lab.config.compose as c; print(c.CONF_DIR)"
    found = run(installed, "python", "-c", code, cwd=tmp_path)
    assert found.returncode == 0, found.stderr[-2000:]
    conf = Path(found.stdout.strip())
    assert conf.parts[-2:] == ("lora_lab", "conf") and ROOT not in conf.parents  # the installed copy
    shipped = sorted(p.relative_to(conf).as_posix() for p in conf.rglob("*.yaml"))
    assert shipped == sorted(p.relative_to(ROOT / "conf").as_posix() for p in (ROOT / "conf").rglob("*.yaml"))


def test_the_installed_command_runs_from_another_folder(installed: Path, tmp_path: Path) -> None:
    helped = run(installed, "lora-lab", "--help", cwd=tmp_path)
    assert helped.returncode == 0 and "hparams_search" in helped.stdout, helped.stderr[-2000:]
    result = run(installed, "lora-lab", "model=tiny", "train.max_steps=2", "task.eval_limit=4", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "lora-lab run:" in result.stdout and list((tmp_path / "outputs" / "runs").glob("*/metrics.json"))
