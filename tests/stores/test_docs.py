"""docs/stores.md shows the SQL the stores run, and its code runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shoptoken.stores import EncryptedStore, PostgresStore, SQLiteStore

PAGE = (Path(__file__).parent.parent.parent / "docs" / "stores.md").read_text()


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", PAGE, flags=re.DOTALL)


def test_schema_sql_is_the_stores_own() -> None:
    """The page's CREATE TABLE and ALTER TABLE statements are exactly what the stores run."""
    assert [block.strip() for block in _blocks("sql")] == [
        SQLiteStore.schema_sql(),
        PostgresStore.schema_sql(),
        PostgresStore.upgrade_sql() + ";",
    ]


def test_python_blocks_compile() -> None:
    """Every Python block on the page is valid code."""
    for number, block in enumerate(_blocks("python")):
        compile(block, f"stores.md block {number}", "exec")


def test_key_generation_block_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """The key-generation example prints a key that parse_keys reads back."""
    [block] = [b for b in _blocks("python") if "generate_key" in b]
    exec(block, {})  # noqa: S102 - our own docs
    printed = capsys.readouterr().out.strip()
    assert len(EncryptedStore.parse_keys(printed)["2026-01"]) == 32
