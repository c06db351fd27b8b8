"""The client credentials grant: an app's token for one of its organization's own shops.

Shopify documents it for apps of the developer's own organization installed
on stores that organization owns (RFC 6749 section 4.4)::

    POST https://{shop}/admin/oauth/access_token
    client_id, client_secret, grant_type=client_credentials
    -> {"access_token": "shpat_...", "scope": "...", "expires_in": 86399}

No refresh token: the app simply asks again before the token expires.
`ShopifyOAuth.mint` sends it; this module holds its constants and the
reading of its answer.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

import attrs

from .._log import get_logger
from .._token import ASSUMED_LIFETIME, Token, parse_token_response

log = get_logger()

CLIENT_CREDENTIALS_GRANT: Final = "client_credentials"
#: What Shopify answers as ``expires_in`` (about 24 hours).
CLIENT_CREDENTIALS_LIFETIME: Final = 86399.0


def parse_minted(data: object, *, sent_at: float) -> Token:
    """Read a client credentials answer; one without ``expires_in`` still expires.

    A minted token that claimed no expiry would never be minted again, yet
    Shopify documents these tokens as expiring: it gets `ASSUMED_LIFETIME`
    (and a warning is logged), so the manager mints its successor early
    rather than serve it past a lifetime nobody told us.

    Raises:
        TokenResponseError: The body is not a usable token (see `parse_token_response`).
    """
    token = parse_token_response(data, sent_at=sent_at)
    if token.expires_at is not None:
        return token
    log.warning("shoptoken.token.missing_expires_in", assumed_lifetime=ASSUMED_LIFETIME)
    expires_at = datetime.fromtimestamp(sent_at, UTC) + timedelta(seconds=ASSUMED_LIFETIME)
    return attrs.evolve(token, expires_at=expires_at)
