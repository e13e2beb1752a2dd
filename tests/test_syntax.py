"""Every Python file parses with the grammar of the oldest Python we support (the Space may run 3.10)."""

from __future__ import annotations

import ast
import subprocess
import sys

import tomllib

from conftest import ROOT

OLDEST = (3, 10)


def _python_files() -> list[str]:
    listed = subprocess.run(["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True, text=True)
    if listed.returncode == 0 and listed.stdout.strip():
        return listed.stdout.split()
    return [str(p.relative_to(ROOT)) for p in ROOT.rglob("*.py") if ".venv" not in p.parts]


def test_every_file_parses_as_python_3_10():
    bad = []
    for name in _python_files():
        try:
            ast.parse((ROOT / name).read_text(), filename=name, feature_version=OLDEST)
        except SyntaxError as err:
            bad.append(f"{name}:{err.lineno}: {err.msg}")
    assert not bad, "syntax Python 3.10 cannot parse:\n" + "\n".join(bad)


def test_the_check_catches_newer_syntax():
    newer = "def f[T](x: T) -> T:\n    return x\n"  # PEP 695 (3.12)
    try:
        ast.parse(newer, feature_version=OLDEST)
    except SyntaxError:
        pass
    else:
        raise AssertionError("feature_version=(3, 10) accepted 3.12 syntax")
    if sys.version_info >= (3, 11):
        try:
            ast.parse("try:\n    pass\nexcept* ValueError:\n    pass\n", feature_version=OLDEST)
        except SyntaxError:
            pass
        else:
            raise AssertionError("feature_version=(3, 10) accepted except* (3.11)")


def test_ruff_and_packaging_target_the_oldest_python():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert config["tool"]["ruff"]["target-version"] == "py3" + str(OLDEST[1])
    assert config["project"]["requires-python"] == ">=3." + str(OLDEST[1])
