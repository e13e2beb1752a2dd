"""The README and docs/ a newcomer reads: links that resolve, install lines that match the pins."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    out, fenced = set(), False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            out.add(re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", title)))
    return out


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_resolve(page: Path):
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        assert dest.exists(), f"{page.name}: link to missing {target}"
        if anchor and dest.suffix == ".md":
            assert anchor in _anchors(dest), f"{page.name}: no heading for #{anchor} in {dest.name}"


def _pins(text: str) -> dict[str, str]:
    return dict(re.findall(r"\b(torch|torchvision)==([\w.]+)", text))


def test_cpu_install_line_pins_what_requirements_pin():
    readme = ROOT / "README.md"
    cpu_line = next(line for line in readme.read_text().splitlines() if "download.pytorch.org/whl/cpu" in line)
    required = _pins((ROOT / "requirements.txt").read_text())
    assert set(required) == {"torch", "torchvision"}
    assert _pins(cpu_line) == required


def test_readme_stays_short_and_keeps_the_ci_command():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250, "long material belongs in docs/"
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci in text, "the README's test command must be the one .ci/run runs"
    assert "## Architecture" in text
