"""The docs site: every page in the navigation exists, every page is in the navigation."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _nav_pages() -> set[str]:
    text = (ROOT / "mkdocs.yml").read_text()
    return set(re.findall(r":\s*([\w/]+\.md)\s*$", text, re.M))


def test_nav_pages_exist():
    missing = sorted(p for p in _nav_pages() if not (ROOT / "docs" / p).is_file())
    assert not missing, f"mkdocs.yml names pages that do not exist: {missing}"


def test_every_page_is_in_the_nav():
    pages = {str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").rglob("*.md")}
    orphans = sorted(pages - _nav_pages())
    assert not orphans, f"pages missing from mkdocs.yml: {orphans}"
