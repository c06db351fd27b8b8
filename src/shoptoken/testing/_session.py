"""App Bridge session tokens: minting them, and checking them as Shopify does.

A session token is an HS256 JWT signed with the app's client secret::

    {"iss": "https://{shop}/admin", "dest": "https://{shop}", "aud": client_id,
     "sub": "42", "exp": ..., "nbf": ..., "iat": ..., "jti": "...", "sid": "..."}

The check here is the fake's own, written apart from shoptoken's client-side
verification so that each can test the other.
"""

from __future__ import annotations

import secrets
import uuid
import warnings
from typing import TYPE_CHECKING, Final

import jwt

if TYPE_CHECKING:
    from collections.abc import Sequence

#: Clock skew both sides allow on ``exp`` and ``nbf``, as Shopify's libraries do.
LEEWAY: Final = 10.0
_REQUIRED: Final = ("iss", "dest", "aud", "sub", "exp", "nbf")


class SessionTokenRejected(ValueError):
    """The subject token of a token exchange is not a valid session token."""


def mint_session_token(
    shop: str,
    *,
    client_id: str,
    secret: str | None,
    now: float,
    user_id: int = 1,
    expires_in: float = 60.0,
    alg: str = "HS256",
    overrides: dict[str, object] | None = None,
) -> str:
    """Mint an App Bridge-shaped session token.

    Args:
        shop: The normalized shop domain.
        client_id: The ``aud`` claim.
        secret: The signing key (None with ``alg="none"``).
        now: Wall time (epoch seconds) of ``iat`` and ``nbf``.
        user_id: The staff user (``sub``).
        expires_in: Seconds from ``now`` to ``exp``.
        alg: The JWT algorithm.
        overrides: Claims to replace; a None value removes the claim.

    Returns:
        The encoded JWT.
    """
    issued = int(now)
    claims: dict[str, object] = {
        "iss": f"https://{shop}/admin",
        "dest": f"https://{shop}",
        "aud": client_id,
        "sub": str(user_id),
        "exp": issued + int(expires_in),
        "nbf": issued,
        "iat": issued,
        "jti": str(uuid.uuid4()),
        "sid": secrets.token_hex(16),
    }
    for name, value in (overrides or {}).items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    with warnings.catch_warnings():
        # Shopify's secrets are long; a test's short one is not worth a warning.
        warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
        # PyJWT wants "" as the key of an unsigned ("none") token.
        return jwt.encode(claims, "" if secret is None else secret, algorithm=alg)


def check_session_token(
    token: str, *, shop: str, client_id: str, secrets: Sequence[str], now: float
) -> dict[str, object]:
    """Verify a session token presented at ``shop``'s token endpoint.

    Args:
        token: The encoded JWT.
        shop: The host the token exchange was sent to.
        client_id: The app's client id: the required ``aud``.
        secrets: The app's client secrets: a signature by any of them
            (the current and, during a rotation, the old) is accepted.
        now: Wall time (epoch seconds) ``exp`` and ``nbf`` are checked against.

    Returns:
        The verified claims.

    Raises:
        SessionTokenRejected: Bad signature or algorithm, missing claims,
            wrong audience, expired or not yet valid (beyond `LEEWAY`), or
            ``dest``/``iss`` not this shop.
    """
    claims = _decode(token, client_id, secrets)
    exp, nbf = claims["exp"], claims["nbf"]
    if not isinstance(exp, int | float) or not isinstance(nbf, int | float):
        msg = "session token rejected: exp and nbf must be numbers"
        raise SessionTokenRejected(msg)
    if now >= exp + LEEWAY:
        msg = "session token rejected: expired"
        raise SessionTokenRejected(msg)
    if now < nbf - LEEWAY:
        msg = "session token rejected: not yet valid"
        raise SessionTokenRejected(msg)
    if claims["dest"] != f"https://{shop}":
        msg = "session token rejected: dest is another shop"
        raise SessionTokenRejected(msg)
    if claims["iss"] != f"https://{shop}/admin":
        msg = "session token rejected: iss is not this shop's admin"
        raise SessionTokenRejected(msg)
    return dict(claims)


def _decode(token: str, client_id: str, secrets: Sequence[str]) -> dict[str, object]:
    """The claims, if ``token`` is signed by one of ``secrets`` for ``client_id``."""
    failure: jwt.PyJWTError | None = None
    for secret in secrets:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
                return dict(
                    jwt.decode(
                        token,
                        secret,
                        algorithms=["HS256"],
                        audience=client_id,
                        # Times are checked by the caller against the fake's clock.
                        options={
                            "require": list(_REQUIRED),
                            "verify_exp": False,
                            "verify_nbf": False,
                        },
                    )
                )
        except jwt.InvalidSignatureError as exc:
            failure = exc  # perhaps signed with the other secret
        except jwt.PyJWTError as exc:
            failure = exc
            break
    msg = f"session token rejected: {type(failure).__name__}"
    raise SessionTokenRejected(msg) from failure
