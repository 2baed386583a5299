"""The Python examples in the README and docs/ run as written; every page is in the site."""

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


def python_blocks(text: str) -> str:
    """The page's ```python blocks, joined in order (later blocks build on earlier ones)."""
    return "\n".join(re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL))


PAGES = [
    page.relative_to(ROOT).as_posix()
    for page in [ROOT / "README.md", *sorted(ROOT.glob("docs/**/*.md"))]
    if python_blocks(page.read_text())
]


@pytest.mark.parametrize("page", PAGES)
def test_page_examples_run(page, tmp_path, monkeypatch):
    code = python_blocks((ROOT / page).read_text())
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    exec(compile(code, page, "exec"), {"__name__": "__docs__"})


def test_every_page_is_in_the_site_navigation():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())

    def pages(nav):
        for entry in nav:
            value = next(iter(entry.values())) if isinstance(entry, dict) else entry
            yield from pages(value) if isinstance(value, list) else [value]

    on_disk = {p.relative_to(ROOT / "docs").as_posix() for p in ROOT.glob("docs/**/*.md")}
    assert set(pages(config["nav"])) == on_disk
