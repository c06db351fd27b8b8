"""``shoptoken refresh`` and ``shoptoken forget`` against a fake Shopify on loopback."""

from __future__ import annotations

from shoptoken import TokenKey

from .conftest import Cli, Served, load, save

KEY = TokenKey.offline("my-store")


def test_refresh_rotates_and_saves(run_cli: Cli, served: Served, db: str) -> None:
    """The new pair is saved, Shopify accepts it, and the old one is revoked."""
    old = served.fake.install(KEY.shop)
    save(db, {KEY: old})
    result = run_cli.invoke("refresh", "my-store", "--store", db, env=served.env)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(f"Refreshed {KEY}: the new token expires in 59m")
    new = load(db, KEY)
    assert new is not None
    assert new != old
    assert served.fake.is_valid(KEY.shop, new.access_token)
    assert not served.fake.is_valid(KEY.shop, old.access_token)
    assert served.fake.refreshes == {KEY.shop: 1}
    # Says where its Shopify requests went (the testing switch is never silent).
    assert "SHOPTOKEN_FAKE_SHOPIFY_URL" in result.stderr


def test_refresh_of_an_uninstalled_shop(run_cli: Cli, served: Served, db: str) -> None:
    """A revoked refresh token is one line naming re-authorization; the store is untouched."""
    old = served.fake.install(KEY.shop)
    save(db, {KEY: old})
    served.fake.revoke(KEY.shop)
    result = run_cli.invoke("refresh", str(KEY), "--store", db, env=served.env)
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1].startswith("Error: ")
    assert load(db, KEY) == old


def test_refresh_of_a_client_credentials_key_mints(run_cli: Cli, served: Served, db: str) -> None:
    """A client-credentials key needs no stored token: the command mints one and saves it."""
    minted = TokenKey.client_credentials("my-store")
    save(db, {})
    result = run_cli.invoke("refresh", str(minted), "--store", db, env=served.env)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(f"Refreshed {minted}: the new token expires in 23h")
    token = load(db, minted)
    assert token is not None
    assert token.refresh_token is None
    assert served.fake.is_valid(minted.shop, token.access_token)
    assert served.fake.mints == {minted.shop: 1}


def test_refresh_of_a_missing_key(run_cli: Cli, served: Served, db: str) -> None:
    """A key with no stored token is an error, with no request sent."""
    save(db, {})
    result = run_cli.invoke("refresh", "other-store", "--store", db, env=served.env)
    assert result.exit_code == 1
    assert "no token stored for offline:other-store.myshopify.com" in result.stderr
    assert served.fake.requests == 0


def test_refresh_of_a_non_expiring_token(run_cli: Cli, served: Served, db: str) -> None:
    """A legacy token cannot be refreshed: the error says to migrate it."""
    save(db, {KEY: served.fake.install_non_expiring(KEY.shop)})
    result = run_cli.invoke("refresh", str(KEY), "--store", db, env=served.env)
    assert result.exit_code == 1
    assert "shoptoken migrate" in result.stderr
    assert served.fake.requests == 0


def test_verbose_refresh_logs_events_without_tokens(run_cli: Cli, served: Served, db: str) -> None:
    """-vv shows the manager's events on stderr, and still no token."""
    save(db, {KEY: served.fake.install(KEY.shop)})
    result = run_cli.invoke("-vv", "refresh", str(KEY), "--store", db, env=served.env)
    assert result.exit_code == 0, result.stderr
    assert "shoptoken.refresh.started" in result.stderr
    assert "shoptoken.refresh.succeeded" in result.stderr


def test_forget_deletes_after_confirmation(offline_cli: Cli, served: Served, db: str) -> None:
    """`forget` asks first; --yes (or a yes) deletes the pair, and a second forget finds none."""
    token = served.fake.install(KEY.shop)
    offline_cli.secrets += [token.access_token, str(token.refresh_token)]
    save(db, {KEY: token, TokenKey.offline("other"): token})
    declined = offline_cli.invoke("forget", "my-store", "--store", db, input="n\n")
    assert declined.exit_code == 1
    assert load(db, KEY) == token
    accepted = offline_cli.invoke("forget", "my-store", "--store", db, input="y\n")
    assert accepted.exit_code == 0
    assert f"Forgot {KEY}" in accepted.stdout
    assert load(db, KEY) is None
    assert load(db, TokenKey.offline("other")) == token
    again = offline_cli.invoke("forget", "my-store", "--yes", "--store", db)
    assert again.exit_code == 1
    assert again.stderr == f"Error: no token stored for {KEY}\n"


def test_forget_prompt_names_the_key(offline_cli: Cli, served: Served, db: str) -> None:
    """The confirmation prompt says which key's tokens it will delete."""
    save(db, {KEY: served.fake.install(KEY.shop)})
    declined = offline_cli.invoke("forget", "my-store", "--store", db, input="n\n")
    assert declined.exit_code == 1
    assert f"Delete the tokens of {KEY}?" in declined.stdout + declined.stderr
