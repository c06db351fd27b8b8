"""The exception tree.

Operational failures share one root so an app can catch them together::

    ShopTokenError
    ├── NoToken                    nothing stored for the key
    ├── ReauthorizationRequired    the merchant (or customer) must authorize again
    ├── RefreshFailed              the refresh endpoint failed; maybe transient,
    │                              maybe with an unknown outcome, maybe the
    │                              app's own credentials (invalid_client)
    ├── LockTimeout                a cross-process lock was not granted in time
    ├── PersistenceError           the TokenCallback (store) failed
    ├── InvalidSessionToken        an App Bridge session JWT was rejected
    ├── InvalidCallback            an OAuth callback query failed verification
    ├── InvalidWebhook             also a ValueError: a webhook failed verification
    ├── InvalidShopDomain          also a ValueError: bad input, not an outage
    └── ServiceTimeout             also a TimeoutError: a TokenService call's
                                   answer did not come back in time

Misuse (calling a closed manager, a bad policy value) raises the built-in
`RuntimeError` / `ValueError` instead, so it is never mistaken for an outage.

No message built here ever contains an access or refresh token. Every field
is passed as a keyword with a default, so `copy.copy` can clone an error for
each caller waiting on one shared refresh.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._keys import TokenKey


class ShopTokenError(Exception):
    """Root of every operational error raised by shoptoken.

    Attributes:
        key: The token key the error concerns, when there is one.
    """

    def __init__(self, message: str = "", *, key: TokenKey | None = None) -> None:
        super().__init__(message)
        self.key = key


class NoToken(ShopTokenError):
    """No token is stored for the key (the shop never installed, or was forgotten)."""


class ReauthorizationRequired(ShopTokenError):
    """The refresh token is expired or revoked: the user must authorize again.

    Raised without any further HTTP call until `TokenManager.put_token`
    installs a new token for the key.
    """


class RefreshFailed(ShopTokenError):
    """The token endpoint did not give a new token.

    Attributes:
        status: HTTP status, or None when no response arrived (network error).
        error: Shopify's ``error`` code, when the body had one.
        error_description: Shopify's ``error_description``, when present.
        retry_after: Seconds the server asked us to wait (429), or None.
        transient: True when retrying later may succeed (5xx, 429, network,
            malformed body); False for errors a retry will not fix.
        outcome_unknown: True when the request may have been processed
            although no usable answer arrived (a timeout or reset after it
            was sent, 500/502/504/520, an unreadable 2xx body): Shopify may
            have rotated the pair, which revokes the previous access token
            at once. False for a definite "nothing changed" (4xx, 429, 503,
            a connection refused before anything was sent).
        app_credentials_rejected: True for 401 ``invalid_client``: the app's
            own client id or secret was refused. No shop is at fault and
            every shop would get the same answer.
    """

    def __init__(
        self,
        message: str = "",
        *,
        key: TokenKey | None = None,
        status: int | None = None,
        error: str | None = None,
        error_description: str | None = None,
        retry_after: float | None = None,
        transient: bool = True,
        outcome_unknown: bool = False,
    ) -> None:
        super().__init__(message, key=key)
        self.status = status
        self.error = error
        self.error_description = error_description
        self.retry_after = retry_after
        self.transient = transient
        self.outcome_unknown = outcome_unknown

    @property
    def app_credentials_rejected(self) -> bool:
        """True for 401 ``invalid_client``: the app's credentials, not the shop's grant."""
        return self.error == "invalid_client"


class LockTimeout(ShopTokenError):
    """A store's cross-process lock on the key was not granted within the timeout."""


class PersistenceError(ShopTokenError):
    """The `TokenCallback` failed to load, save or delete (the cause is chained)."""


class InvalidSessionToken(ShopTokenError):
    """An App Bridge session token failed verification; fetch a new one."""


class InvalidCallback(ShopTokenError):
    """An OAuth callback query failed verification (HMAC, state, timestamp or shop)."""


class InvalidWebhook(ShopTokenError, ValueError):
    """A webhook delivery failed verification (signature, a header, the JSON body or the shop).

    Answer it with 401 Unauthorized, as Shopify requires of the compliance topics.
    """


class InvalidShopDomain(ShopTokenError, ValueError):
    """A shop domain is not a valid ``*.myshopify.com`` name."""


class ServiceTimeout(ShopTokenError, TimeoutError):
    """A `TokenService` call did not get its answer from the service's thread in time.

    The work it asked for (a refresh, a save) goes on in the service; only
    this caller stopped waiting.
    """
