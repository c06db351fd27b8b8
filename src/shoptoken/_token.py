"""Token: one access/refresh pair, and parsing Shopify's token responses."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import attrs

from ._log import get_logger

log = get_logger()

#: Lifetime assumed for a refreshable token whose response had no
#: ``expires_in``: half of Shopify's documented 3600 s, so such a token is
#: refreshed early rather than served expired. Refreshing must never stop.
ASSUMED_LIFETIME: Final = 1800.0
# Bounds on what a token endpoint may claim. Shopify's longest lifetime is
# 90 days; anything beyond ten years is a broken response, not a token.
_MAX_LIFETIME: Final = 10 * 365 * 86400.0
_MAX_DIGITS: Final = 12


class TokenResponseError(ValueError):
    """A token endpoint answered 2xx with a body that is not a usable token."""


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        msg = f"expected a datetime, not {type(value).__name__}"
        raise TypeError(msg)
    if value.tzinfo is None or value.utcoffset() is None:
        msg = "token datetimes must be timezone-aware (use tzinfo=UTC)"
        raise ValueError(msg)
    return value.astimezone(UTC)


@attrs.frozen
class Token:
    """An access token with its refresh token and lifetimes.

    `repr` and `str` never show either secret; compare tokens with ``==``
    (attrs equality covers the secrets without printing them).

    Attributes:
        access_token: The secret sent as ``X-Shopify-Access-Token``.
        refresh_token: The secret that buys the next pair, or None when the
            token cannot be refreshed (non-expiring and online tokens).
        scope: Comma-separated granted scopes.
        expires_at: When the access token expires (aware UTC), None if never.
        refresh_token_expires_at: When the refresh token expires, if known.
        associated_user_id: The staff user of an online token.
        associated_user_scope: That user's scopes (online tokens).
        obtained_at: When the token was obtained (the wall time its request
            was sent), if known. Every token the manager obtains carries it,
            and the stores keep it: it fixes the token's refresh time (see
            `RefreshPolicy.refresh_before`) the same way in every process.
    """

    access_token: str = attrs.field(repr=False, validator=attrs.validators.instance_of(str))
    refresh_token: str | None = attrs.field(default=None, repr=False)
    scope: str = ""
    expires_at: datetime | None = attrs.field(default=None, converter=_utc)
    refresh_token_expires_at: datetime | None = attrs.field(default=None, converter=_utc)
    associated_user_id: int | None = None
    associated_user_scope: str | None = None
    obtained_at: datetime | None = attrs.field(default=None, converter=_utc)

    def __attrs_post_init__(self) -> None:
        if not self.access_token:
            msg = "access_token must not be empty"
            raise ValueError(msg)
        if self.refresh_token is not None and (
            not isinstance(self.refresh_token, str) or not self.refresh_token
        ):
            msg = "refresh_token must be a non-empty str or None"
            raise ValueError(msg)

    def __str__(self) -> str:
        return repr(self)

    @property
    def expiring(self) -> bool:
        """True when the access token has an expiry time."""
        return self.expires_at is not None

    @property
    def refreshable(self) -> bool:
        """True when a refresh token is present."""
        return self.refresh_token is not None


def check_aware(when: datetime | None) -> None:
    """Refuse a ``before`` time that is not an aware datetime.

    Raises:
        TypeError: Not a datetime (nor None).
        ValueError: A naive datetime.
    """
    if when is not None:
        _utc(when)


def obtained_before(token: Token, before: datetime | None) -> bool:
    """Whether ``token`` belongs to what ended at ``before`` (an uninstall's time).

    True when ``before`` is None (everything), and for a token without
    ``obtained_at`` (it cannot prove it is newer).
    """
    obtained = token.obtained_at
    return before is None or obtained is None or obtained < before


def _seconds(data: Mapping[str, Any], name: str) -> float | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, str):
        # Some proxies stringify numbers; accept plain digits only.
        # ASCII digits only ("²" is a digit to isdigit), and short: int() of a
        # huge digit string raises its own ValueError.
        digits = value.strip()
        if not (digits.isascii() and digits.isdigit() and len(digits) <= _MAX_DIGITS):
            msg = f"{name} is not a number of seconds"
            raise TokenResponseError(msg)
        value = int(digits)
    if isinstance(value, bool) or not isinstance(value, int | float):
        msg = f"{name} is not a number of seconds"
        raise TokenResponseError(msg)
    # Compare before any float conversion: a JSON integer may exceed a float.
    finite = isinstance(value, int) or math.isfinite(value)
    if not finite or value <= 0 or value > _MAX_LIFETIME:
        # No value in the message: str() of a huge int raises by itself.
        msg = f"{name} is outside (0, {_MAX_LIFETIME:.0f}] seconds"
        raise TokenResponseError(msg)
    return float(value)


def _optional_str(data: Mapping[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        msg = f"{name} is not a string"
        raise TokenResponseError(msg)
    return value


def parse_token_response(data: object, *, sent_at: float) -> Token:
    """Build a `Token` from a token endpoint's JSON body.

    Lifetimes count from ``sent_at`` (epoch seconds when the request was
    sent), never from when the answer arrived: a slow response must not make
    a token look younger than it is.

    Args:
        data: The decoded JSON body.
        sent_at: Wall time (epoch seconds) at which the request was sent.

    Returns:
        The token. A refresh token without ``expires_in`` gets
        `ASSUMED_LIFETIME` (and a warning is logged) so it keeps refreshing.

    Raises:
        TokenResponseError: The body is not an object, lacks an access
            token, or has absurd lifetimes. Never echoes the secrets.
    """
    if not isinstance(data, Mapping):
        msg = "token response is not a JSON object"
        raise TokenResponseError(msg)
    access = data.get("access_token")
    if not isinstance(access, str) or not access:
        msg = "token response has no access_token"
        raise TokenResponseError(msg)
    refresh = _optional_str(data, "refresh_token")
    scope = data.get("scope", "")
    if not isinstance(scope, str):
        msg = "scope is not a string"
        raise TokenResponseError(msg)
    expires_in = _seconds(data, "expires_in")
    refresh_expires_in = _seconds(data, "refresh_token_expires_in")
    if expires_in is None and refresh is not None:
        log.warning(
            "shoptoken.token.missing_expires_in",
            assumed_lifetime=ASSUMED_LIFETIME,
        )
        expires_in = ASSUMED_LIFETIME
    user = data.get("associated_user")
    user_id: int | None = None
    if user is not None:
        raw_id = user.get("id") if isinstance(user, Mapping) else None
        if isinstance(raw_id, bool) or not isinstance(raw_id, int):
            msg = "associated_user has no integer id"
            raise TokenResponseError(msg)
        user_id = raw_id
    base = datetime.fromtimestamp(sent_at, UTC)
    return Token(
        access_token=access,
        refresh_token=refresh,
        scope=scope,
        expires_at=None if expires_in is None else base + timedelta(seconds=expires_in),
        refresh_token_expires_at=(
            None if refresh_expires_in is None else base + timedelta(seconds=refresh_expires_in)
        ),
        associated_user_id=user_id,
        associated_user_scope=_optional_str(data, "associated_user_scope"),
        obtained_at=base,
    )
