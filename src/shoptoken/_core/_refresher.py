"""Refresher: the one thing the manager needs from an OAuth client."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

import attrs

from .._errors import RefreshFailed
from .._keys import TokenKind

if TYPE_CHECKING:
    from collections.abc import Callable

    from .._keys import TokenKey
    from .._token import Token


class Refresher(Protocol):
    """Turns a token into its successor. `ShopifyOAuth` is one.

    A refresher that also has ``mint(key, *, clock)`` (see `Minter`; so does
    `ShopifyOAuth`) serves client-credentials keys: the manager mints their
    tokens rather than refreshing them.

    The manager passes its own wall ``clock``; the refresher reads it once,
    just before sending the request, and dates the new token from that
    instant (``expires_at = sent_at + expires_in``), so every token a manager
    holds is dated by one clock whatever clock the client was built with.
    """

    async def refresh(
        self, key: TokenKey, token: Token, *, clock: Callable[[], float] | None = None
    ) -> Token:
        """Exchange ``token``'s refresh token for a new pair.

        Raises:
            ReauthorizationRequired: The refresh token is dead (``invalid_grant``,
                401, or the token cannot be refreshed at all).
            RefreshFailed: Anything else; ``transient`` says if a retry may help.
        """
        ...


class Minter(Protocol):
    """Obtains a mintable key's token from scratch. `ShopifyOAuth` is one.

    A refresher with a ``mint`` method serves client-credentials keys
    (`TokenKey.client_credentials`): the manager mints their tokens instead
    of refreshing them. The clock is read as in `Refresher.refresh`.
    """

    async def mint(self, key: TokenKey, *, clock: Callable[[], float] | None = None) -> Token:
        """Obtain a new token for ``key`` (the client credentials grant).

        Raises:
            ReauthorizationRequired: The shop refuses the app (not installed).
            RefreshFailed: Anything else; ``transient`` says if a retry may help.
        """
        ...


async def mint(refresher: object, key: TokenKey, clock: Callable[[], float] | None) -> Token:
    """Mint ``key``'s token with ``refresher``'s ``mint`` (routed by kind for a `KindRouter`).

    Raises:
        RefreshFailed: The refresher cannot mint (not transient).
    """
    minter = getattr(refresher, "mint", None)
    if not callable(minter):
        raise _no_route(key, "refresher that mints")
    token: Token = await minter(key, clock=clock)
    return token


def _no_route(key: TokenKey, what: str) -> RefreshFailed:
    return RefreshFailed(
        f"no {what} is configured for {key.kind.value} keys ({key})",
        key=key,
        error="no_refresher",
        transient=False,
    )


@attrs.frozen
class KindRouter:
    """Sends each key's refresh to the refresher for its kind.

    What `open_token_manager` builds from a mapping such as
    ``{TokenKind.OFFLINE: shopify_oauth, TokenKind.CUSTOMER: customer_oauth}``,
    so one manager serves Admin and Customer Account tokens side by side.
    """

    routes: Mapping[TokenKind, Refresher]

    def __attrs_post_init__(self) -> None:
        for kind, refresher in self.routes.items():
            if not isinstance(kind, TokenKind):
                msg = f"refresher routes are keyed by TokenKind, not {kind!r}"
                raise TypeError(msg)
            if not callable(getattr(refresher, "refresh", None)):
                msg = f"the refresher for {kind.value} keys has no refresh() method"
                raise TypeError(msg)

    async def refresh(
        self, key: TokenKey, token: Token, *, clock: Callable[[], float] | None = None
    ) -> Token:
        """Refresh with the refresher registered for ``key.kind``.

        Raises:
            RefreshFailed: No refresher is registered for the kind (not transient).
        """
        refresher = self.routes.get(key.kind)
        if refresher is None:
            raise _no_route(key, "refresher")
        return await refresher.refresh(key, token, clock=clock)

    async def mint(self, key: TokenKey, *, clock: Callable[[], float] | None = None) -> Token:
        """Mint with the refresher registered for ``key.kind`` (see `Minter`).

        Raises:
            RefreshFailed: No refresher that mints is registered for the kind.
        """
        refresher = self.routes.get(key.kind)
        if refresher is None:
            raise _no_route(key, "refresher that mints")
        return await mint(refresher, key, clock)


def as_refresher(refresher: Refresher | Mapping[TokenKind, Refresher]) -> Refresher:
    """Return ``refresher``, or a `KindRouter` over it when it is a mapping."""
    if isinstance(refresher, Mapping):
        return KindRouter(dict(refresher))
    if not callable(getattr(refresher, "refresh", None)):
        msg = f"{type(refresher).__name__} is not a Refresher (it has no refresh() method)"
        raise TypeError(msg)
    return refresher
