"""Per-shop counters of the fake, and their frozen snapshot."""

from __future__ import annotations

import attrs


@attrs.frozen
class ShopStatistics:
    """What happened to one shop at the fake (a snapshot; see `FakeShopify.statistics`).

    Attributes:
        refreshes: Successful refresh grants.
        refreshes_rejected: Refresh grants refused (400 ``invalid_grant``, or
            401 for an uninstalled app).
        refreshes_recovered: Refreshes that presented the previous refresh
            token (Shopify's recovery window).
        codes_exchanged: Authorization codes exchanged for tokens.
        token_exchanges: Session tokens exchanged for access tokens.
        session_tokens_rejected: Token exchanges refused with
            ``invalid_subject_token``.
        migrations: Non-expiring tokens exchanged for expiring pairs (a
            retry that returns the same pair counts too).
        api_calls: Admin API and Customer Account API calls.
        api_calls_rejected: Of those, calls refused with 401: an expired,
            revoked or unknown token was used.
        customer_logins: Customer authorization codes exchanged.
        customer_refreshes: Customer refresh grants that succeeded.
        customer_refreshes_rejected: Customer refresh grants refused.
    """

    refreshes: int = 0
    refreshes_rejected: int = 0
    refreshes_recovered: int = 0
    codes_exchanged: int = 0
    token_exchanges: int = 0
    session_tokens_rejected: int = 0
    migrations: int = 0
    api_calls: int = 0
    api_calls_rejected: int = 0
    customer_logins: int = 0
    customer_refreshes: int = 0
    customer_refreshes_rejected: int = 0


@attrs.define
class Counters:
    """The live, mutable counters behind a `ShopStatistics` snapshot."""

    refreshes: int = 0
    refreshes_rejected: int = 0
    refreshes_recovered: int = 0
    codes_exchanged: int = 0
    token_exchanges: int = 0
    session_tokens_rejected: int = 0
    migrations: int = 0
    api_calls: int = 0
    api_calls_rejected: int = 0
    customer_logins: int = 0
    customer_refreshes: int = 0
    customer_refreshes_rejected: int = 0

    def snapshot(self) -> ShopStatistics:
        """A frozen copy."""
        return ShopStatistics(**attrs.asdict(self))
