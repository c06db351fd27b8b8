"""Bad input gives one line on stderr and a non-zero status, never a traceback or a secret."""

from __future__ import annotations

from pathlib import Path

import pytest

import shoptoken

from .conftest import Cli


def one_error_line(text: str) -> str:
    """The single line of ``text``, which must start with ``Error:``."""
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    assert lines[0].startswith("Error: ")
    return lines[0]


def test_version(offline_cli: Cli) -> None:
    """--version names the package version."""
    result = offline_cli.invoke("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"shoptoken, version {shoptoken.__version__}"


@pytest.mark.parametrize("command", ["status", "forget offline:a --yes", "migrate --dry-run"])
def test_unknown_store_scheme(offline_cli: Cli, command: str) -> None:
    """An unknown scheme is a usage error naming --store and the schemes it takes."""
    result = offline_cli.invoke(*command.split(), "--store", "redis://cache:6379/0")
    assert result.exit_code == 2
    line = one_error_line(result.stderr)
    assert "'--store'" in line
    assert "sqlite:///PATH" in line
    assert result.stdout == ""


def test_store_url_password_is_not_echoed(offline_cli: Cli) -> None:
    """A refused PostgreSQL URL's password never appears in the error."""
    offline_cli.secrets.append("hunter2")
    result = offline_cli.invoke("status", "--store", "postgresql://u:hunter2@db/app?table=a-b")
    assert result.exit_code != 0
    one_error_line(result.stderr)


@pytest.mark.parametrize(
    "key", ["bad::key", "online:my-store:abc", "offline:not a shop", "https://x.com"]
)
def test_malformed_key(offline_cli: Cli, db: str, key: str) -> None:
    """A key TokenKey.parse refuses is a usage error that names the forms it takes."""
    result = offline_cli.invoke("forget", key, "--yes", "--store", db)
    assert result.exit_code == 2
    line = one_error_line(result.stderr)
    assert "Invalid value for 'KEY'" in line


def test_customer_keys_are_refused_by_refresh(offline_cli: Cli, db: str) -> None:
    """Customer tokens belong to the app's CustomerAccountOAuth, not the command."""
    env = {"SHOPTOKEN_CLIENT_ID": "id", "SHOPTOKEN_CLIENT_SECRET": "secret-value-0000"}
    offline_cli.secrets.append("secret-value-0000")
    result = offline_cli.invoke("refresh", "customer:my-store:42", "--store", db, env=env)
    assert result.exit_code == 2
    assert "CustomerAccountOAuth" in one_error_line(result.stderr)


@pytest.mark.parametrize("command", ["refresh offline:my-store", "run", "migrate"])
def test_missing_credentials(offline_cli: Cli, db: str, command: str) -> None:
    """Without a client id or secret the command names the variables to set."""
    result = offline_cli.invoke(*command.split(), "--store", db, env={"SHOPTOKEN_CLIENT_ID": "app"})
    assert result.exit_code == 2
    line = one_error_line(result.stderr)
    assert "SHOPTOKEN_CLIENT_SECRET" in line
    assert "SHOPTOKEN_CLIENT_ID " not in line  # only the missing one is named


def test_client_secret_is_never_echoed(offline_cli: Cli, tmp_path: Path) -> None:
    """A command failing after reading the client secret does not repeat it."""
    offline_cli.secrets.append("shpss_top_secret_value")
    env = {"SHOPTOKEN_CLIENT_ID": "app", "SHOPTOKEN_CLIENT_SECRET": "shpss_top_secret_value"}
    result = offline_cli.invoke(
        "refresh", "my-store", "--store", f"sqlite:///{tmp_path / 'none.db'}", env=env
    )
    assert result.exit_code == 1
    one_error_line(result.stderr)


def test_missing_store_file(offline_cli: Cli, tmp_path: Path) -> None:
    """A SQLite path that does not exist is reported, not created."""
    path = tmp_path / "absent.db"
    result = offline_cli.invoke("status", "--store", f"sqlite:///{path}")
    assert result.exit_code == 1
    assert f"no token store at {path}" in one_error_line(result.stderr)
    assert not path.exists()


@pytest.mark.parametrize("command", ["status", "run", "migrate", "refresh my-store"])
@pytest.mark.parametrize("content", [b"this is not a database" * 100, None])
def test_unreadable_store(
    offline_cli: Cli, tmp_path: Path, content: bytes | None, command: str
) -> None:
    """A file that is not a SQLite database, or a directory, is one line of error."""
    path = tmp_path / "tokens.db"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    env = {"SHOPTOKEN_CLIENT_ID": "app", "SHOPTOKEN_CLIENT_SECRET": "s" * 32}
    offline_cli.secrets.append("s" * 32)
    result = offline_cli.invoke(*command.split(), "--store", f"sqlite:///{path}", env=env)
    assert result.exit_code == 1
    assert "SQLite" in one_error_line(result.stderr)


def test_malformed_encryption_key(offline_cli: Cli) -> None:
    """A bad SHOPTOKEN_ENCRYPTION_KEY is refused without echoing its material."""
    offline_cli.secrets.append("c2VjcmV0LWtleS1tYXRlcmlhbA")
    env = {"SHOPTOKEN_ENCRYPTION_KEY": "k1:c2VjcmV0LWtleS1tYXRlcmlhbA"}
    result = offline_cli.invoke("status", "--store", "memory://", env=env)
    assert result.exit_code == 2
    assert "encryption key #1" in one_error_line(result.stderr)


def test_fake_shopify_url_must_be_loopback(offline_cli: Cli, db: str) -> None:
    """The testing switch refuses anything but a loopback http URL."""
    env = {
        "SHOPTOKEN_CLIENT_ID": "app",
        "SHOPTOKEN_CLIENT_SECRET": "x" * 32,
        "SHOPTOKEN_FAKE_SHOPIFY_URL": "https://example.com",
    }
    offline_cli.secrets.append("x" * 32)
    result = offline_cli.invoke("refresh", "my-store", "--store", db, env=env)
    assert result.exit_code == 2
    assert "SHOPTOKEN_FAKE_SHOPIFY_URL" in one_error_line(result.stderr)


@pytest.mark.parametrize(
    "args",
    [
        ["no-such-command"],
        ["status", "--no-such-option"],
        ["demo", "--shops", "0"],
        ["demo", "--store", "memory://"],
        ["fake-shopify", "--install", "not a shop"],
    ],
)
def test_usage_errors_are_one_line(offline_cli: Cli, args: list[str]) -> None:
    """Click's own usage errors are one line too, with a pointer to --help."""
    result = offline_cli.invoke(*args)
    assert result.exit_code == 2
    assert "--help'" in one_error_line(result.stderr)


def test_store_from_the_environment(offline_cli: Cli, tmp_path: Path) -> None:
    """SHOPTOKEN_STORE names the store when --store is not given."""
    path = tmp_path / "env.db"
    result = offline_cli.invoke("status", env={"SHOPTOKEN_STORE": f"sqlite:///{path}"})
    assert f"no token store at {path}" in one_error_line(result.stderr)
