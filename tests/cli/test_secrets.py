"""No command prints a token: every command's output, at every verbosity, is checked."""

from __future__ import annotations

import json

from shoptoken import TokenKey

from .conftest import Cli, Served, save


def test_no_command_prints_a_token(run_cli: Cli, served: Served, db: str) -> None:
    """Status, refresh, migrate and forget, quiet and -vv, show no token and no client secret."""
    fake = served.fake
    keys = [TokenKey.offline(f"shop-{i}") for i in range(3)]
    save(
        db, {keys[0]: fake.install(keys[0].shop), keys[1]: fake.install_non_expiring(keys[1].shop)}
    )
    save(db, {keys[2]: fake.install(keys[2].shop)})
    fake.fail_next(503)  # an error message from Shopify is shown too
    env = served.env
    runs = [
        ("status",),
        ("status", "--json"),
        ("-vv", "status"),
        ("refresh", str(keys[0])),
        ("-vv", "refresh", str(keys[0])),
        ("-vv", "refresh", str(keys[2])),
        ("migrate", "--dry-run"),
        ("-vv", "migrate"),
        ("-vv", "refresh", str(keys[1])),
        ("forget", "--yes", str(keys[2])),
        ("-vv", "status", "--json"),
    ]
    outputs = []
    for args in runs:
        # Cli.invoke fails on any issued token (by value and by shape) or the secret.
        result = run_cli.invoke(*args, "--store", db, env=env)
        outputs.append(result.stdout + result.stderr)
    assert len(fake.issued) >= 6
    assert any("503" in output for output in outputs)  # the failure was reported
    assert any("shoptoken.refresh.succeeded" in output for output in outputs)
    assert {
        row["key"] for row in json.loads(run_cli.invoke("status", "--json", "--store", db).stdout)
    } == {
        str(keys[0]),
        str(keys[1]),
    }
