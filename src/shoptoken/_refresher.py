"""Refresher: the one thing the manager needs from an OAuth client."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._keys import TokenKey
    from ._token import Token


class Refresher(Protocol):
    """Turns a token into its successor. `ShopifyOAuth` is one.

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
