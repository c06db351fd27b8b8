"""What the demo runs: its settings, its shops, and a policy and faults scaled to its tokens."""

from __future__ import annotations

from typing import Final

import attrs

from .._core._policy import RefreshPolicy
from ..testing import Fault

_NAMES: Final = (
    "aurora-apparel",
    "bluebird-books",
    "cobalt-coffee",
    "dune-outfitters",
    "ember-ceramics",
    "fjord-furniture",
    "gilded-gardens",
    "harbor-hats",
)


def shop_names(count: int) -> list[str]:
    """``count`` distinct demo shop names."""
    return [_NAMES[i] if i < len(_NAMES) else f"demo-shop-{i + 1}" for i in range(count)]


def demo_policy(lifetime: float) -> RefreshPolicy:
    """Shopify's defaults scaled from 3600 s tokens down to ``lifetime``.

    A token is refreshed at 50-60 % of its life and never served in its
    last 10 %, leaving 30 % of its life for retries.
    """
    return RefreshPolicy(
        refresh_before=0.4 * lifetime,
        jitter=0.1 * lifetime,
        skew=0.1 * lifetime,
        retry_initial=lifetime / 50,
        retry_max=lifetime / 10,
        # API calls already made with a token reach the fake before its rotation.
        drain=min(1.0, lifetime / 10),
    )


def demo_faults(lifetime: float) -> tuple[Fault, ...]:
    """Every kind of fault, with delays scaled to ``lifetime``.

    Half of them lose the answer after Shopify rotated the pair (`Fault.lost_answers`:
    a closed or reset connection, a timeout, 502, 504 or 520; and a body cut
    short): the old access token is revoked, and the manager must recover
    with the previous refresh token and never serve the old access token.
    """
    return (
        Fault.http(500),
        Fault.http(503),
        Fault.rate_limited(max(1.0, round(lifetime / 10))),
        Fault.drop(),
        Fault.drop(reset=True),
        Fault.not_json(),
        Fault.spike(lifetime / 10),
        Fault.truncate(),
        *Fault.lost_answers(),
    )


@attrs.frozen
class DemoSettings:
    """The demo's options.

    Attributes:
        shops: How many shops to install.
        lifetime: Access token lifetime, seconds.
        duration: How long the app runs, seconds (both managers together).
        fault_rate: Share of token requests that fail.
        seed: Seed of the faults and of the app's traffic.
        store: Store URL; None for a temporary SQLite file.
        encryption_key: Keys to encrypt the store with, if any.
        live: Show a live table (a terminal) rather than plain lines.
    """

    shops: int
    lifetime: float
    duration: float
    fault_rate: float
    seed: int
    store: str | None = attrs.field(default=None, repr=False)
    encryption_key: str | None = attrs.field(default=None, repr=False)
    live: bool = False
