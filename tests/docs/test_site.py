"""The docs site builds with --strict (no broken link or anchor, every page in the nav) and the README stays a
short entry that links into it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
README_MAX_LINES = 250
"""The issue's bound: a README that can be read in one sitting; the rest lives in the docs."""


def _nav_pages(node: object) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, list):
        return [p for item in node for p in _nav_pages(item)]
    if isinstance(node, dict):
        return [p for value in node.values() for p in _nav_pages(value)]
    return []


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-f", str(ROOT / "mkdocs.yml"), "-d", str(site)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert (site / "index.html").exists() and (site / "policy-reference" / "index.html").exists()


def test_every_page_is_in_the_nav_and_every_nav_entry_exists() -> None:
    nav = _nav_pages(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"])
    pages = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md"))
    assert sorted(nav) == pages
    for required in ("operating.md", "alerting.md", "input.md", "monitors.md", "architecture.md", "cli.md"):
        assert required in nav


def test_the_readme_is_short_keeps_the_two_commands_and_links_into_the_docs() -> None:
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) < README_MAX_LINES
    assert "make demo" in text and "make test" in text
    links = re.findall(r"\]\((docs/[^)#]+)", text)
    assert {"docs/getting-started.md", "docs/policy-reference.md", "docs/deployment.md"} <= set(links)
    for link in links:
        assert (ROOT / link).exists(), link
