"""The library installs from a wheel (with the `micam` command); requirement files agree with pyproject."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv

import pytest
import tomllib
from packaging.requirements import Requirement

from conftest import ROOT


def _parse(lines) -> dict[str, str]:
    out = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            req = Requirement(line)
            out[req.name.lower().replace("_", "-")] = str(req)
    return out


def test_requirement_files_match_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core, extras = _parse(project["dependencies"]), project["optional-dependencies"]
    app, evaluation, fast = _parse(extras["app"]), _parse(extras["eval"]), _parse(extras["road-fast"])
    space = _parse((ROOT / "requirements.txt").read_text().splitlines())
    dev_lines = (ROOT / "requirements-dev.txt").read_text().splitlines()
    assert "-r requirements.txt" in [line.strip() for line in dev_lines]
    dev = _parse(dev_lines)
    assert space == {**core, **app, **fast}, "requirements.txt: pyproject's dependencies + [app] + [road-fast]"
    assert "cvxopt" not in core, "cvxopt is GPL-3: an optional extra of micam_core, never a core dependency"
    assert {k: dev[k] for k in evaluation if k in dev} == evaluation, "requirements-dev.txt must hold [eval]"
    assert not set(space) & set(dev), "requirements-dev.txt repeats a requirement of requirements.txt"


@pytest.mark.slow
def test_wheel_installs_a_working_library_and_command(tmp_path):
    src = tmp_path / "src"  # build from a copy: setuptools writes build/ and *.egg-info next to the sources
    shutil.copytree(ROOT / "micam_core", src / "micam_core", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(wheels), str(src)], check=True, capture_output=True, timeout=300)
    wheel = next(wheels.glob("micam_core-*.whl"))
    env_dir = tmp_path / "venv"
    venv.create(env_dir, system_site_packages=True, with_pip=False)  # torch etc. come from the system
    python = env_dir / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q",
                    str(wheel)], check=True, capture_output=True, timeout=300)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    where = subprocess.run([str(python), "-c", "import micam_core, micam_core.evaluation.cli as c; "
                            "print(micam_core.__file__)"], cwd=outside, env=env, capture_output=True, text=True,
                           timeout=300)
    assert where.returncode == 0, where.stderr
    assert str(env_dir) in where.stdout and str(ROOT) not in where.stdout
    helped = subprocess.run([str(env_dir / "bin" / "micam"), "evaluate", "--help"], cwd=outside, env=env,
                            capture_output=True, text=True, timeout=300)
    assert helped.returncode == 0, helped.stderr
    assert "--resume" in helped.stdout and "--engine" in helped.stdout
