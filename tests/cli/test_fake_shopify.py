"""``shoptoken fake-shopify`` in a child process, driven by the other commands over HTTP."""

from __future__ import annotations

import json
import re
import signal

from shoptoken.testing import FakeShopify

from .conftest import FAKE_TOKEN, Cli, child_env, spawn


def test_serves_installs_and_stops(offline_cli: Cli, db: str) -> None:
    """The banner gives a working environment; refresh and migrate use it; Ctrl-C stops it."""
    args = ("fake-shopify", "--install", "shop-a", "--install-non-expiring", "shop-b")
    with spawn(*args, "--store", db, "--port", "0", env=child_env()) as process:
        assert process.stdout is not None
        banner = []
        for line in process.stdout:
            banner.append(line)
            if line.startswith("Press Ctrl-C"):
                break
        text = "".join(banner)
        assert not FAKE_TOKEN.search(text)
        assert "installed offline:shop-a.myshopify.com (expiring 3600s tokens)" in text
        assert "installed offline:shop-b.myshopify.com (a non-expiring token)" in text
        # The fake's own test credentials are printed: clients need them.
        assert FakeShopify().client_secret in text
        env = dict(re.findall(r"^\s*export (\w+)=(\S+)$", text, flags=re.MULTILINE))
        assert set(env) == {
            "SHOPTOKEN_FAKE_SHOPIFY_URL",
            "SHOPTOKEN_CLIENT_ID",
            "SHOPTOKEN_CLIENT_SECRET",
        }
        offline_cli.secrets.append(env["SHOPTOKEN_CLIENT_SECRET"])

        states = json.loads(offline_cli.invoke("status", "--json", "--store", db).stdout)
        assert [row["state"] for row in states] == ["fresh", "non-expiring"]
        refreshed = offline_cli.invoke("refresh", "shop-a", "--store", db, env=env)
        assert refreshed.exit_code == 0, refreshed.stderr
        migrated = offline_cli.invoke("migrate", "--store", db, env=env)
        assert migrated.exit_code == 0, migrated.stderr
        assert migrated.stdout.splitlines()[-1] == "1 migrated, 0 failed, 0 skipped."

        process.send_signal(signal.SIGINT)
        rest, errors = process.communicate(timeout=10)
    assert process.returncode == 0, errors
    assert rest.strip() == "FakeShopify stopped."
    assert errors == ""


def test_a_taken_port_is_one_line(offline_cli: Cli) -> None:
    """Listening on a port in use fails with one line, not a traceback."""
    with spawn("fake-shopify", "--port", "0", env=child_env()) as first:
        assert first.stdout is not None
        port = re.findall(r":(\d+)$", first.stdout.readline().strip())[0]
        result = offline_cli.invoke("fake-shopify", "--port", port)
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=10)
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ")
    assert len(result.stderr.splitlines()) == 1
