"""``shoptoken migrate`` end to end: non-expiring offline tokens become expiring pairs."""

from __future__ import annotations

from shoptoken import TokenKey

from .conftest import Cli, Served, load, save

LEGACY = [TokenKey.offline("legacy-one"), TokenKey.offline("legacy-two")]
GONE = TokenKey.offline("uninstalled")
MODERN = TokenKey.offline("modern")


def _seed(served: Served, db: str) -> None:
    tokens = {key: served.fake.install_non_expiring(key.shop) for key in [*LEGACY, GONE]}
    tokens[MODERN] = served.fake.install(MODERN.shop)
    save(db, tokens)
    served.fake.revoke(GONE.shop)


def test_dry_run_lists_and_changes_nothing(offline_cli: Cli, served: Served, db: str) -> None:
    """--dry-run needs no credentials, sends nothing, and lists only non-expiring offline keys."""
    _seed(served, db)
    offline_cli.fake = served.fake
    before = {key: load(db, key) for key in [*LEGACY, GONE, MODERN]}
    result = offline_cli.invoke("migrate", "--dry-run", "--store", db)
    assert result.exit_code == 0, result.stderr
    listed = [line for line in result.stdout.splitlines() if "would migrate" in line]
    assert sorted(line.split()[1] for line in listed) == sorted(key.shop for key in [*LEGACY, GONE])
    assert "3 shops would be migrated (dry run: nothing was changed)." in result.stdout
    assert served.fake.requests == 0
    assert {key: load(db, key) for key in before} == before


def test_migrates_saves_and_reports_failures(run_cli: Cli, served: Served, db: str) -> None:
    """Each shop is migrated and saved; an uninstalled one fails with the reason; exit 1."""
    _seed(served, db)
    modern = load(db, MODERN)
    result = run_cli.invoke("migrate", "--store", db, env=served.env)
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    for key in LEGACY:
        assert " migrated " in next(line for line in lines if key.shop in line)
        token = load(db, key)
        assert token is not None
        assert token.refresh_token is not None
        assert token.expires_at is not None
        assert served.fake.is_valid(key.shop, token.access_token)
    failed = next(line for line in lines if GONE.shop in line)
    assert " failed " in failed
    assert "authorize again" in failed
    assert load(db, GONE) is not None  # kept: the merchant re-authorizes
    assert load(db, MODERN) == modern
    assert lines[-1] == "2 migrated, 1 failed, 0 skipped."
    assert "Migrated" in result.stderr  # the progress bar, on stderr
    # A second run finds only the uninstalled shop left.
    again = run_cli.invoke("migrate", "--store", db, env=served.env)
    assert again.exit_code == 1
    assert again.stdout.splitlines()[-1] == "0 migrated, 1 failed, 0 skipped."


def test_nothing_to_migrate(run_cli: Cli, served: Served, db: str) -> None:
    """A store of expiring tokens has nothing to migrate: exit 0."""
    save(db, {MODERN: served.fake.install(MODERN.shop)})
    result = run_cli.invoke("migrate", "--store", db, env=served.env)
    assert result.exit_code == 0
    assert result.stdout == "No non-expiring offline tokens to migrate.\n"
