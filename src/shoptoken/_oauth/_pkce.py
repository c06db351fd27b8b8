"""PKCE (RFC 7636, S256): the proof a public client gives that it started the login."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from typing import Final

# RFC 7636 section 4.1: 43-128 characters of the unreserved set.
_VERIFIER: Final = re.compile(r"[A-Za-z0-9._~-]{43,128}")


def check_verifier(verifier: object) -> str:
    # Never echo the value: it is the secret half of the PKCE pair.
    if not isinstance(verifier, str) or not _VERIFIER.fullmatch(verifier):
        msg = "code_verifier must be 43-128 characters of A-Z a-z 0-9 - . _ ~ (RFC 7636)"
        raise ValueError(msg)
    return verifier


def pkce_challenge(verifier: str) -> str:
    """The S256 PKCE challenge of a verifier: base64url(sha256(verifier)), unpadded.

    Raises:
        ValueError: The verifier is not 43-128 unreserved characters (RFC 7636).
    """
    digest = hashlib.sha256(check_verifier(verifier).encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def new_pkce() -> tuple[str, str]:
    """Make a fresh PKCE pair for one login.

    Returns:
        ``(verifier, challenge)``: an 86-character random verifier to keep in
        the customer's server-side session until the callback, and its S256
        challenge for `CustomerAccountOAuth.authorization_url`.
    """
    # 64 random bytes make 86 base64url characters, all in RFC 7636's set.
    verifier = secrets.token_urlsafe(64)
    return verifier, pkce_challenge(verifier)
