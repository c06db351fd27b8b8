"""``shoptoken run --metrics``: a Prometheus scrape and a health check over loopback."""

from __future__ import annotations

import signal

import httpx
import pytest

from shoptoken import TokenKey

from .conftest import FAKE_TOKEN, Cli, Served, child_env, install_stale, save, spawn
from .test_run import Lines

pytest.importorskip("prometheus_client")

from prometheus_client.parser import text_string_to_metric_families

STALE = TokenKey.offline("stale-store")
FRESH = TokenKey.offline("fresh-store")


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, by name and labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_scrape_of_a_running_daemon(served: Served, db: str) -> None:
    """/metrics shows the refresh the daemon made and its keys; /healthz is 200 ok."""
    save(db, {STALE: install_stale(served.fake, STALE)})
    save(db, {FRESH: served.fake.install(FRESH.shop)})
    args = ("run", "--store", db, "--metrics", "127.0.0.1:0")
    with spawn(*args, env=child_env(**served.env)) as process:
        lines = Lines(process)
        port = lines.wait_for("shoptoken.cli.metrics.serving")["port"]
        # The stale key is served at once and refreshed in the background.
        lines.wait_for_all("shoptoken.refresh.succeeded", "shoptoken.cli.run.ready")
        base = f"http://127.0.0.1:{port}"
        scrape = httpx.get(f"{base}/metrics", timeout=10)
        health = httpx.get(f"{base}/healthz", timeout=10)
        missing = httpx.get(f"{base}/nothing", timeout=10)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    assert scrape.status_code == 200
    assert scrape.headers["content-type"].startswith("text/plain; version=0.0.4")
    figures = samples(scrape.text)
    assert figures[("shoptoken_up", ())] == 1
    assert figures[("shoptoken_keys_known", ())] == 2
    assert figures[("shoptoken_refreshes_succeeded_total", ())] == 1
    event = ("shoptoken_events_total", (("event", "shoptoken.refresh.succeeded"),))
    assert figures[event] == 1
    count = ("shoptoken_refresh_duration_seconds_count", (("outcome", "succeeded"),))
    assert figures[count] == 1
    assert (health.status_code, health.text) == (200, "ok\n")
    assert missing.status_code == 404
    assert not FAKE_TOKEN.search(scrape.text + "".join(lines.seen))


@pytest.mark.parametrize("address", ["9464", "localhost:", "host:99999", ":"])
def test_bad_metrics_address(offline_cli: Cli, db: str, address: str) -> None:
    """A malformed --metrics address is a one-line usage error."""
    save(db, {})
    env = {"SHOPTOKEN_CLIENT_ID": "id", "SHOPTOKEN_CLIENT_SECRET": "secret"}
    result = offline_cli.invoke("run", "--store", db, "--metrics", address, env=env)
    assert result.exit_code == 2
    assert "'--metrics'" in result.stderr
    assert "HOST:PORT" in result.stderr
