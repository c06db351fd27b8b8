"""Every example runs as a reader would run it, and shows what it says it shows.

Each one runs in a child process (``python examples/NAME.py``) against the
fake Shopify, with warnings turned into errors. It must exit 0, print its
report, write nothing to stderr, and never print a token: the fake's tokens
all carry ``_fake_`` (``shpat_fake_...``), and JWTs start with ``eyJ``. The
runs start together (each takes one to four seconds), then each test checks
its own.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parent.parent / "examples"
# Generous: a loaded CI machine is slower than a laptop.
TIMEOUT = 120.0
Runs = dict[str, "subprocess.CompletedProcess[str]"]


def command(name: str, *args: str) -> list[str]:
    """``python -W error examples/name args...``."""
    return [sys.executable, "-W", "error", str(EXAMPLES / name), *args]


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` from the repository's root, capturing its output."""
    return subprocess.run(  # noqa: S603 - our own examples, with this interpreter
        argv, capture_output=True, text=True, timeout=TIMEOUT, check=False, cwd=EXAMPLES.parent
    )


@pytest.fixture(scope="module")
def scratch_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where custom_callback.py --db writes its database."""
    return tmp_path_factory.mktemp("custom_callback") / "app.db"


@pytest.fixture(scope="module")
def runs(scratch_db: Path) -> Runs:
    """Every example run the tests check, run side by side."""
    argvs = {
        "refresh_demo": command("refresh_demo.py", "--quick"),
        "order_sync_daemon": command("order_sync_daemon.py"),
        "order_sync_daemon_options": command(
            "order_sync_daemon.py", "--hours", "2", "--shops", "20"
        ),
        "custom_callback": command("custom_callback.py"),
        "custom_callback_db": command("custom_callback.py", "--db", str(scratch_db)),
        "embedded_app_token_exchange": command("embedded_app_token_exchange.py"),
        "headless_customer_token": command("headless_customer_token.py"),
        "migrate_fleet": command("migrate_fleet.py"),
        "fastapi_app": command("fastapi_app.py"),
        "flask_app": command("flask_app.py"),
        "celery_worker": command("celery_worker.py"),
        "back_office_daemon": command("back_office_daemon.py"),
        "back_office_daemon_options": command(
            "back_office_daemon.py", "--hours", "24", "--stores", "10"
        ),
        "order_sync_daemon_help": command("order_sync_daemon.py", "--help"),
        "webhooks_uninstall": command("webhooks_uninstall.py"),
        "custom_callback_help": command("custom_callback.py", "--help"),
        "back_office_daemon_help": command("back_office_daemon.py", "--help"),
    }
    # Most of them wait more than they compute (threads, sockets, a clock
    # that runs at a set rate), so more of them than CPUs run at once.
    with ThreadPoolExecutor(max_workers=2 * (os.cpu_count() or 1)) as pool:
        done = {name: pool.submit(run, argv) for name, argv in argvs.items()}
        return {name: future.result() for name, future in done.items()}


def output(runs: Runs, name: str) -> str:
    """The stdout of run ``name``, after checking its exit status, stderr and secrets."""
    done = runs[name]
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stderr == ""
    assert "_fake_" not in done.stdout
    assert "eyJ" not in done.stdout
    return done.stdout


def number(pattern: str, text: str) -> int:
    """The integer captured by ``pattern``'s first group in ``text``."""
    found = re.search(pattern, text)
    assert found is not None, f"{pattern!r} not in:\n{text}"
    return int(found[1])


def test_every_example_is_tested() -> None:
    """Each examples/*.py file has a test here."""
    tested = {
        "celery_worker.py",
        "back_office_daemon.py",
        "custom_callback.py",
        "embedded_app_token_exchange.py",
        "fastapi_app.py",
        "flask_app.py",
        "headless_customer_token.py",
        "migrate_fleet.py",
        "order_sync_daemon.py",
        "refresh_demo.py",
        "webhooks_uninstall.py",
    }
    assert {path.name for path in EXAMPLES.glob("*.py")} == tested


def test_fastapi_app(runs: Runs) -> None:
    """fastapi_app.py: the lifespan runs a TokenService; every call answered across refreshes."""
    out = output(runs, "fastapi_app")
    assert number(r"(\d+) API calls through FastAPI", out) == 120
    assert number(r"\((\d+) answered 200\)", out) == 120
    assert number(r"(\d+) token refreshes", out) >= 3


def test_flask_app(runs: Runs) -> None:
    """flask_app.py: eight threads use the sync API; every call answered across refreshes."""
    out = output(runs, "flask_app")
    assert number(r"(\d+) API calls from 8 Flask threads", out) == 720
    assert number(r"\((\d+) answered 200\)", out) == 720
    assert number(r"(\d+) token refreshes", out) >= 3


def test_celery_worker(runs: Runs) -> None:
    """celery_worker.py: tasks in six threads share one service over SQLite; all answered."""
    out = output(runs, "celery_worker")
    assert number(r"\((\d+) Admin API calls answered 200\)", out) == 120
    assert number(r"(\d+) token refreshes for 4 shops", out) >= 4


def test_refresh_demo(runs: Runs) -> None:
    """refresh_demo.py --quick: an hour of refreshes, no expired token served."""
    out = output(runs, "refresh_demo")
    assert number(r"(\d+) calls with an expired token", out) == 0
    assert number(r"(\d+) refresh tokens rejected", out) == 0
    assert number(r"(\d+) refreshes,", out) > 0


def test_order_sync_daemon(runs: Runs) -> None:
    """order_sync_daemon.py: 8 workers over 4 hours of rotations; no API call rejected."""
    out = output(runs, "order_sync_daemon")
    assert "syncing orders of 8 shops for 4 h" in out
    assert len(re.findall(r"^0[1-4]:00 ", out, flags=re.MULTILINE)) == 4
    # 8 shops, one sync every 2 minutes for 4 hours (the last round may land on the end).
    assert number(r"(\d+) API calls made", out) in (960, 961)
    assert number(r"(\d+) rejected;", out) == 0
    assert number(r"(\d+) syncs failed", out) == 0
    assert number(r"(\d+) workers stopped", out) == 0
    assert number(r"(\d+) token rotations \(4 per shop\)", out) == 32
    assert number(r"(\d+) refresh tokens rejected", out) == 0


def test_order_sync_daemon_options(runs: Runs) -> None:
    """order_sync_daemon.py --hours --shops: more shops, the same guarantees."""
    out = output(runs, "order_sync_daemon_options")
    assert "syncing orders of 20 shops for 2 h" in out
    assert number(r"(\d+) API calls made", out) in (1200, 1201)
    assert number(r"(\d+) rejected;", out) == 0
    assert number(r"(\d+) syncs failed", out) == 0


def test_custom_callback(runs: Runs) -> None:
    """custom_callback.py: rotations saved in the app's table survive a restart; forget deletes."""
    out = output(runs, "custom_callback")
    first, _, restart = out.partition("restart:")
    assert len(re.findall(r"rotated its tokens", first)) == 6  # 3 shops, 2 hours
    assert "3 of 3 rows hold the current pair" in first
    assert "3 tokens loaded, 3 accepted by Shopify, 0 refreshes needed to resume" in restart
    assert "forget() deleted its row" in restart
    assert "2 of 2 rows hold the current pair" in restart
    assert "offline:cedar-coffee.myshopify.com" not in restart.rpartition("deleted its row")[2]
    assert number(r"(\d+) rotations, each saved before use", out) == 9
    assert number(r"(\d+) refresh tokens rejected", out) == 0


def test_custom_callback_keeps_its_file(runs: Runs, scratch_db: Path) -> None:
    """custom_callback.py --db leaves its database behind, and refuses to reuse a file."""
    assert "9 rotations, each saved before use" in output(runs, "custom_callback_db")
    assert scratch_db.stat().st_size > 0
    again = run(command("custom_callback.py", "--db", str(scratch_db)))
    assert again.returncode == 2
    assert "exists; name a new file" in again.stderr


def test_embedded_app_token_exchange(runs: Runs) -> None:
    """embedded_app_token_exchange.py: valid JWTs are exchanged once per shop; bad ones get 401."""
    out = output(runs, "embedded_app_token_exchange")
    assert "backend listening on http://127.0.0.1:" in out
    assert re.search(r"acme-outdoor: a session token +-> 200 .* offline token exchanged", out)
    assert re.search(r"acme-outdoor: another user's +-> 200 .* offline token stored", out)
    assert re.search(r"bright-books: a session token +-> 200 .* offline token exchanged", out)
    assert re.search(r"forged: signed with another key +-> 401 .*signature", out)
    assert re.search(r"expired a minute ago +-> 401 .*expired", out)
    assert re.search(r"for another app \(aud\) +-> 401 ", out)
    assert re.search(r"no Authorization header +-> 401 ", out)
    assert "2 token exchanges (one per shop), 0 bad session tokens" in out
    assert "3 Admin API calls (0 rejected)" in out


def test_headless_customer_token(runs: Runs) -> None:
    """headless_customer_token.py: PKCE login, 4 hours of rotations, then a re-login."""
    out = output(runs, "headless_customer_token")
    assert "customer sent to shopify.com/authentication/" in out
    assert "token stored under customer:hydrogen-outfitters.myshopify.com:" in out
    assert len(re.findall(r"token of gid://shopify/Customer/42 rotated", out)) == 4
    assert "rendered 16 times: 17 API calls, 0 rejected, 4 token rotations" in out
    assert "the customer is sent to log in again" in out


def test_migrate_fleet(runs: Runs) -> None:
    """migrate_fleet.py: every live legacy token migrates; revoked shops are reported, not fatal."""
    out = output(runs, "migrate_fleet")
    run1 = out.partition("run 1:")[2].partition("run 2:")[0]
    assert len(re.findall(r" migrated(?: |$)", run1, flags=re.MULTILINE)) == 7
    assert len(re.findall(r"on attempt 2, after no answer", run1)) == 1
    assert len(re.findall(r"revoked: the merchant must authorize", run1)) == 2
    assert "7 migrated, 1 already expiring, 2 need re-authorization, 0 to retry" in run1
    assert "run 2: 0 migrated, 8 already expiring, 2 need re-authorization, 0 to retry" in out
    assert "after the deadline: 8 of 10 shops' tokens work" in out
    assert (
        "to re-authorize: offline:harbor-tea.myshopify.com, offline:indigo-inks.myshopify.com"
        in out
    )


def test_back_office_daemon(runs: Runs) -> None:
    """back_office_daemon.py: 3 days of client-credentials keys, minted with no put_token."""
    out = output(runs, "back_office_daemon")
    assert "back office of 4 stores for 72 h" in out
    assert "nothing stored at start" in out
    assert len(re.findall(r"^(?:Thu|Fri|Sat|Sun) (?:00|12):00 ", out, flags=re.MULTILINE)) == 6
    assert "restart: 4 of 4 stored tokens still valid" in out
    # 4 stores, a read every 10 minutes for 72 hours.
    assert number(r"(\d+) API calls made", out) == 1728
    assert number(r"(\d+) rejected;", out) == 0
    assert number(r"(\d+) jobs failed", out) == 0
    # A token lives 24 h and is minted again ~6 min before: at 0, 23.9, 47.8 and 71.7 h.
    assert number(r"(\d+) tokens minted \(4 per store", out) == 16
    assert number(r"(\d+) after the restart", out) == 8
    assert number(r"(\d+) re-authorizations", out) == 0


def test_back_office_daemon_options(runs: Runs) -> None:
    """back_office_daemon.py --hours --stores: more stores, no API call rejected."""
    out = output(runs, "back_office_daemon_options")
    assert "back office of 10 stores for 24 h" in out
    assert "restart: 10 of 10 stored tokens still valid" in out
    assert number(r"(\d+) rejected;", out) == 0
    assert number(r"(\d+) tokens minted", out) >= 10


def test_options_are_described(runs: Runs) -> None:
    """The examples that take options describe them in --help."""
    assert "--shops" in output(runs, "order_sync_daemon_help")
    assert "--db" in output(runs, "custom_callback_help")
    assert "--stores" in output(runs, "back_office_daemon_help")


def test_webhooks_uninstall(runs: Runs) -> None:
    """webhooks_uninstall.py: a forged delivery 401, compliance topics, an uninstall ends a shop."""
    out = output(runs, "webhooks_uninstall")
    assert "401  refused: webhook rejected: bad signature" in out
    assert "200  customers/data_request for bright-books.myshopify.com: forgot nothing" in out
    assert re.search(r"customers/redact for bright-books.*gid://shopify/Customer/207119551", out)
    assert "200  app/uninstalled for acme-outdoor.myshopify.com: forgot offline:acme" in out
    assert "200  app/uninstalled for acme-outdoor.myshopify.com: a repeated delivery" in out
    assert "valid_token of acme-outdoor.myshopify.com after its uninstall: NoToken" in out
    assert number(r"refreshes of acme-outdoor\S+ after its uninstall: (\d+)", out) == 0
    assert out.rstrip().endswith("stored: offline:bright-books.myshopify.com")
