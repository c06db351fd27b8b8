"""The distribution says what it is: its license file, its URLs, its docs' counts."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).parent.parent


def project() -> dict[str, object]:
    """The [project] table of pyproject.toml."""
    table: dict[str, object] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return table


def test_license_file_matches_the_metadata() -> None:
    """The MIT license the metadata names ships as a LICENSE file."""
    assert project()["license"] == "MIT"
    assert project()["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License")
    assert "WITHOUT WARRANTY OF ANY KIND" in text


def test_project_urls_are_declared() -> None:
    """The metadata points to the home page, the docs, the changelog and the issues."""
    urls = project()["urls"]
    assert isinstance(urls, dict)
    assert set(urls) == {"Homepage", "Documentation", "Changelog", "Issues"}
    assert all(url.startswith("https://") for url in urls.values())


def test_docs_count_the_examples_there_are() -> None:
    """README and docs/index.md count as many examples as examples/ holds."""
    count = len(list((ROOT / "examples").glob("*.py")))
    words = {5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine", 10: "ten", 11: "eleven"}
    index = (ROOT / "docs" / "index.md").read_text()
    assert re.search(rf"\b{words[count]} runnable programs\b", index)
    readme = (ROOT / "README.md").read_text()
    listed = re.search(r"- `examples/`: (.*?)\n- ", readme, flags=re.DOTALL)
    assert listed is not None
    assert len(re.split(r",\s+", listed.group(1))) == count
