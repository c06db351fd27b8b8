"""The options every command shares also work before the command, as docs/cli.md says."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from shoptoken import Token, TokenKey

from .conftest import Cli, Served, load, save

KEY = TokenKey.offline("my-store")
PAGE = (Path(__file__).parent.parent.parent / "docs" / "cli.md").read_text()


def keys_listed(result_stdout: str) -> list[str]:
    """The keys of ``status --json``'s output."""
    return [row["key"] for row in json.loads(result_stdout)]


def test_store_before_the_command(offline_cli: Cli, db: str) -> None:
    """`shoptoken --store URL status` reads that store."""
    save(db, {KEY: Token("shpat_fake_x")})
    result = offline_cli.invoke("--store", db, "status", "--json")
    assert result.exit_code == 0, result.stderr
    assert keys_listed(result.stdout) == [str(KEY)]


def test_group_store_beats_the_environment(offline_cli: Cli, db: str, tmp_path: Path) -> None:
    """A --store typed before the command wins over SHOPTOKEN_STORE; one after it wins over both."""
    save(db, {KEY: Token("shpat_fake_x")})
    other = f"sqlite:///{tmp_path / 'other.db'}"
    save(other, {})
    env = {"SHOPTOKEN_STORE": other}
    assert keys_listed(offline_cli.invoke("--store", db, "status", "--json", env=env).stdout) == [
        str(KEY)
    ]
    after = offline_cli.invoke("--store", db, "status", "--json", "--store", other, env=env)
    assert keys_listed(after.stdout) == []


def test_credentials_before_the_command(offline_cli: Cli, served: Served, db: str) -> None:
    """--client-id and --client-secret before the command reach it."""
    save(db, {KEY: served.fake.install(KEY.shop)})
    offline_cli.fake = served.fake
    offline_cli.secrets.append(served.fake.client_secret)
    result = offline_cli.invoke(
        "--store",
        db,
        "--client-id",
        served.fake.client_id,
        "--client-secret",
        served.fake.client_secret,
        "refresh",
        "my-store",
        env={"SHOPTOKEN_FAKE_SHOPIFY_URL": served.env["SHOPTOKEN_FAKE_SHOPIFY_URL"]},
    )
    assert result.exit_code == 0, result.stderr
    token = load(db, KEY)
    assert token is not None
    assert served.fake.is_valid(KEY.shop, token.access_token)


@pytest.mark.parametrize(
    "option", ["--store", "--encryption-key", "--client-id", "--client-secret"]
)
def test_docs_shared_options_are_group_options(offline_cli: Cli, option: str) -> None:
    """Every option docs/cli.md lists as shared is in `shoptoken --help`."""
    shared = PAGE.split("## Options every command shares", 1)[1].split("\n## ", 1)[0]
    assert re.search(rf"`{option} ", shared)
    assert option in offline_cli.invoke("--help").stdout
