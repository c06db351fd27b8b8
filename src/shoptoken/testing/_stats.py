"""Per-shop counters of the fake, their frozen snapshot, and the totals over shops."""

from __future__ import annotations

import attrs

from .._keys import normalize_shop as shop_key


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
        api_calls_expired: Of the Admin API calls refused, those made with a
            token past its own expiry.
        api_calls_revoked: Of the Admin API calls refused, those made with a
            token ended before its expiry: superseded by a rotation or a new
            grant, or killed by an uninstall. (Neither expired nor revoked:
            a token the fake never issued.)
        customer_logins: Customer authorization codes exchanged.
        customer_refreshes: Customer refresh grants that succeeded.
        customer_refreshes_rejected: Customer refresh grants refused.
        clients_rejected: Admin token endpoint requests refused with 401
            ``invalid_client`` (a wrong or revoked client secret).
        token_requests_throttled: Admin token endpoint requests sent inside a
            ``Retry-After`` window the fake had announced for the shop, and
            refused with 429 again: a client that ignores ``Retry-After``.
        grants_lost: Admin token endpoint grants the fake performed (a new
            token issued) whose answer a fault then lost: the client holds
            nothing, yet the previous access token is revoked.
        mints: Client credentials grants that issued a token.
        mints_rejected: Client credentials grants refused (401: the app is
            not installed on the shop).
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
    api_calls_expired: int = 0
    api_calls_revoked: int = 0
    customer_logins: int = 0
    customer_refreshes: int = 0
    customer_refreshes_rejected: int = 0
    clients_rejected: int = 0
    token_requests_throttled: int = 0
    grants_lost: int = 0
    mints: int = 0
    mints_rejected: int = 0


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
    api_calls_expired: int = 0
    api_calls_revoked: int = 0
    customer_logins: int = 0
    customer_refreshes: int = 0
    customer_refreshes_rejected: int = 0
    clients_rejected: int = 0
    token_requests_throttled: int = 0
    grants_lost: int = 0
    mints: int = 0
    mints_rejected: int = 0

    def snapshot(self) -> ShopStatistics:
        """A frozen copy."""
        return ShopStatistics(**attrs.asdict(self))


@attrs.define(eq=False)
class FakeStatistics:
    """The fake's counters: per shop (`statistics`) and at a glance (totals, per-shop maps).

    `FakeShopify` is one; its endpoints count through ``_count``.
    """

    _counters: dict[str, Counters] = attrs.field(factory=dict, repr=False, kw_only=True)

    def _count(self, shop: str) -> Counters:
        return self._counters.setdefault(shop, Counters())

    def statistics(self, shop: str) -> ShopStatistics:
        """A snapshot of ``shop``'s counters."""
        return self._counters.get(shop_key(shop), Counters()).snapshot()

    def _per_shop(self, field: str) -> dict[str, int]:
        """One counter per shop, shops at zero left out."""
        counts = {shop: getattr(c, field) for shop, c in self._counters.items()}
        return {shop: count for shop, count in counts.items() if count}

    def _total(self, field: str) -> int:
        return sum(getattr(c, field) for c in self._counters.values())

    @property
    def refreshes(self) -> dict[str, int]:
        """Successful refreshes per shop (shops with none are absent)."""
        return self._per_shop("refreshes")

    @property
    def rejected(self) -> int:
        """Refresh requests refused, all shops (``invalid_grant``, or 401 when uninstalled)."""
        return self._total("refreshes_rejected")

    @property
    def recovered(self) -> int:
        """Refreshes that presented the previous refresh token, all shops.

        A client that saves every pair before using it needs none.
        """
        return self._total("refreshes_recovered")

    @property
    def throttled(self) -> int:
        """Token requests sent inside an announced Retry-After window, all shops."""
        return self._total("token_requests_throttled")

    @property
    def grants_lost(self) -> int:
        """Grants performed whose answer a fault lost (unseen rotations), all shops."""
        return self._total("grants_lost")

    @property
    def mints(self) -> dict[str, int]:
        """Client credentials grants that issued a token, per shop (shops with none are absent)."""
        return self._per_shop("mints")

    @property
    def api_calls(self) -> dict[str, int]:
        """API calls per shop (shops with none are absent)."""
        return self._per_shop("api_calls")

    @property
    def api_calls_rejected(self) -> dict[str, int]:
        """API calls refused with 401 per shop: an expired, revoked or unknown token."""
        return self._per_shop("api_calls_rejected")

    @property
    def api_calls_expired(self) -> dict[str, int]:
        """Admin API calls refused per shop because their token was past its expiry."""
        return self._per_shop("api_calls_expired")

    @property
    def api_calls_revoked(self) -> dict[str, int]:
        """Admin API calls refused per shop because their token was revoked (by a rotation...)."""
        return self._per_shop("api_calls_revoked")
