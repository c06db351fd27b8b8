"""The Admin API's side of the fake: each shop's tokens, and the token endpoint's grants.

Shopify's rules, as the fake applies them:

- one offline token per shop: issuing an expiring pair (any grant) or a
  non-expiring token replaces the previous offline token, whose access token
  stops working at once;
- a refresh rotates both tokens; the refresh token just used stays usable
  until its replacement is first used (the recovery window), at most 30 days
  and never past its own 90-day life; anything else is 400 ``invalid_grant``;
- authorization codes are single use: a second use, an unknown or an expired
  code is 400 ``invalid_request`` "The authorization code was not found or was
  already used" (Shopify's answer);
- token exchange verifies the session token (see `check_session_token`); a bad
  one is 400 ``invalid_subject_token``;
- migration (token exchange of a non-expiring token) gives an expiring pair
  and revokes the old token; retrying it with the same old token returns the
  same pair for 7 days, until the pair is refreshed or replaced;
- an uninstalled app (`revoke`): every token is dead, a refresh is 401;
- the client credentials grant issues a token of ``client_credentials_lifetime``
  (Shopify: 86399 s) with no refresh token, for any shop (every shop counts as
  one of the organization's own stores with the app installed) until the app
  is uninstalled there (401). Shopify does not document whether a new grant
  revokes the shop's previous client credentials token; the fake takes the
  strict reading: one such token per shop, a new grant ends the previous one.
"""

from __future__ import annotations

import itertools
import secrets
from typing import TYPE_CHECKING, Final, Protocol

import attrs

from ._admin_tokens import TokenCheck, _Minted, _Online, _Shop, same, seconds
from ._admin_tokens import _Pair as _Pair  # noqa: PLC0414 - importable here, as it always was
from ._answer import Answer
from ._session import SessionTokenRejected, check_session_token

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from ._stats import Counters

#: How long a migration may be retried with the original non-expiring token.
MIGRATION_RETRY_WINDOW: Final = 7 * 86400.0
REFRESH_GRANT: Final = "refresh_token"
CLIENT_CREDENTIALS_GRANT: Final = "client_credentials"
CODE_GRANT: Final = "authorization_code"
TOKEN_EXCHANGE: Final = "urn:ietf:params:oauth:grant-type:token-exchange"  # noqa: S105 - a URN
ID_TOKEN: Final = "urn:ietf:params:oauth:token-type:id_token"  # noqa: S105 - a URN
OFFLINE_TOKEN: Final = "urn:shopify:params:oauth:token-type:offline-access-token"  # noqa: S105 - a URN
ONLINE_TOKEN: Final = "urn:shopify:params:oauth:token-type:online-access-token"  # noqa: S105 - a URN
#: The Admin API's 401 text.
API_UNAUTHORIZED: Final = (
    "[API] Invalid API key or access token (unrecognized login or wrong password)"
)
_CODE_USED: Final = "The authorization code was not found or was already used"


class AdminSettings(Protocol):
    """The fake's configuration the Admin side reads (live: tests change it)."""

    @property
    def clock(self) -> Callable[[], float]: ...
    @property
    def client_id(self) -> str: ...
    @property
    def client_secret(self) -> str: ...
    @property
    def old_client_secret(self) -> str | None: ...
    @property
    def access_lifetime(self) -> float: ...
    @property
    def refresh_lifetime(self) -> float: ...
    @property
    def online_lifetime(self) -> float: ...
    @property
    def code_lifetime(self) -> float: ...
    @property
    def client_credentials_lifetime(self) -> float: ...
    @property
    def non_expiring_until(self) -> float | None: ...


def truthy(value: str | None) -> bool:
    """Whether a form flag (``expiring``) is set."""
    return value is not None and value.strip().lower() in ("1", "true")


@attrs.define
class _Code:
    shop: str
    scope: str
    online: bool
    user_id: int
    expires_at: float


@attrs.define(eq=False)
class AdminAuthority:
    """Every shop's Admin API tokens and the grants of ``/admin/oauth/access_token``.

    Args:
        settings: The fake's live configuration.
        counters: The per-shop counters.
        issue_pair: Issues a shop's new expiring pair (the fake's
            overridable ``_issue``, which calls `new_pair`).
    """

    settings: AdminSettings
    counters: Callable[[str], Counters]
    issue_pair: Callable[[str], _Pair]
    shops: dict[str, _Shop] = attrs.field(factory=dict)
    _codes: dict[str, _Code] = attrs.field(factory=dict)
    _serial: itertools.count[int] = attrs.field(factory=itertools.count)

    # -- issuing ------------------------------------------------------------------

    def shop(self, shop: str) -> _Shop:
        """The record of ``shop`` (created on first use)."""
        return self.shops.setdefault(shop, _Shop())

    def _secret(self, prefix: str, shop: str) -> str:
        name = shop.removesuffix(".myshopify.com")
        return f"{prefix}_fake_{name}_{next(self._serial):06d}_{secrets.token_hex(8)}"

    def new_pair(self, shop: str) -> _Pair:
        """Issue ``shop``'s new expiring pair: it replaces the shop's offline token."""
        now = self.settings.clock()
        record = self.shop(shop)
        pair = _Pair(
            access=self._secret("shpat", shop),
            refresh=self._secret("shprt", shop),
            expires_at=now + self.settings.access_lifetime,
            refresh_expires_at=now + self.settings.refresh_lifetime,
        )
        record.end_offline(now)
        record.pair, record.installed = pair, True
        return pair

    def new_non_expiring(self, shop: str) -> str:
        """Issue ``shop``'s non-expiring offline token: it replaces the offline token."""
        record = self.shop(shop)
        token = self._secret("shpat", shop)
        record.end_offline(self.settings.clock())
        record.non_expiring, record.installed = token, True
        return token

    def new_online(self, shop: str, user_id: int, scope: str) -> str:
        """Issue an online token for staff user ``user_id``."""
        record = self.shop(shop)
        token = self._secret("shpua", shop)
        expires_at = self.settings.clock() + self.settings.online_lifetime
        record.online[token] = _Online(user_id, scope, expires_at)
        return token

    def new_minted(self, shop: str) -> _Minted:
        """Issue ``shop``'s client credentials token: it ends the previous one."""
        now = self.settings.clock()
        record = self.shop(shop)
        minted = _Minted(
            self._secret("shpat", shop), now + self.settings.client_credentials_lifetime
        )
        record.end_minted(now)
        record.minted = minted
        return minted

    def new_code(self, shop: str, *, scope: str, online: bool, user_id: int) -> str:
        """Issue an authorization code, as if the merchant approved ``scope``."""
        code = secrets.token_hex(16)
        expires_at = self.settings.clock() + self.settings.code_lifetime
        self._codes[code] = _Code(shop, scope, online, user_id, expires_at)
        record = self.shop(shop)
        record.installed = True
        if not online:
            record.scope = scope
        return code

    def revoke(self, shop: str) -> None:
        """Uninstall the app from ``shop``: every token and code dies."""
        record = self.shop(shop)
        record.end_all(self.settings.clock())
        record.installed = False
        for code in [code for code, grant in self._codes.items() if grant.shop == shop]:
            del self._codes[code]

    def expire_refresh_token(self, shop: str) -> None:
        """Make ``shop``'s refresh tokens (current and previous) expired now."""
        pair = self.shop(shop).pair
        if pair is not None:
            pair.refresh_expires_at = min(pair.refresh_expires_at, self.settings.clock())
            pair.previous_refresh = None

    # -- checking -----------------------------------------------------------------

    def check(self, shop: str, access_token: str) -> TokenCheck:
        """What an Admin API call with ``access_token`` meets now."""
        record = self.shops.get(shop)
        if record is None:
            return TokenCheck.UNKNOWN
        return record.check(access_token, self.settings.clock(), self.settings.non_expiring_until)

    def is_valid(self, shop: str, access_token: str) -> bool:
        """Whether an Admin API call with ``access_token`` is accepted now."""
        return self.check(shop, access_token) is TokenCheck.VALID

    def refresh_token_works(self, shop: str, refresh_token: str) -> bool:
        """Whether a refresh with ``refresh_token`` would succeed now."""
        record = self.shops.get(shop)
        now = self.settings.clock()
        return record is not None and record.accepts(refresh_token, now) is not None

    def _non_expiring_alive(self, now: float) -> bool:
        cutoff = self.settings.non_expiring_until
        return cutoff is None or now < cutoff

    # -- the token endpoint -------------------------------------------------------------

    def token_endpoint(self, shop: str, form: Mapping[str, str]) -> Answer:  # noqa: PLR0911 - one answer per case
        """Answer one ``POST https://{shop}/admin/oauth/access_token``."""
        if form.get("client_id") != self.settings.client_id:
            return Answer.error(
                400, "invalid_request", "Could not find Shopify API application with api_key"
            )
        if not self._authenticated(form.get("client_secret", "")):
            self.counters(shop).clients_rejected += 1
            return Answer.error(401, "invalid_client", "Client authentication failed")
        grant = form.get("grant_type")
        if grant == REFRESH_GRANT:
            return self._refresh(shop, form.get("refresh_token", ""))
        if grant == TOKEN_EXCHANGE:
            return self._exchange(shop, form)
        if grant == CLIENT_CREDENTIALS_GRANT:
            return self._client_credentials(shop)
        if grant in (None, CODE_GRANT) and "code" in form:
            # Shopify's code exchange needs no grant_type.
            return self._code(shop, form)
        if grant is None:
            return Answer.error(400, "invalid_request", "Missing code or grant_type")
        return Answer.error(400, "unsupported_grant_type")

    def _secrets(self) -> tuple[str, ...]:
        """The client secrets Shopify accepts: the current one, and the old during a rotation."""
        old = self.settings.old_client_secret
        return (self.settings.client_secret,) if old is None else (self.settings.client_secret, old)

    def _authenticated(self, client_secret: str) -> bool:
        # Every candidate is compared, so the time taken says nothing about which matched.
        return sum(same(client_secret, secret) for secret in self._secrets()) > 0

    def _refresh(self, shop: str, refresh_token: str) -> Answer:
        record = self.shops.get(shop)
        counters = self.counters(shop)
        if record is not None and not record.installed:
            counters.refreshes_rejected += 1
            return Answer.error(401, "invalid_request", "The app is not installed on this shop")
        pair = None if record is None else record.pair
        kept = None if record is None else record.accepts(refresh_token, self.settings.clock())
        if pair is None or kept is None:
            counters.refreshes_rejected += 1
            return Answer.error(400, "invalid_grant", "The refresh token is invalid or expired")
        if not same(pair.refresh, refresh_token):
            counters.refreshes_recovered += 1
        new = self.issue_pair(shop)
        # The token just used becomes the new pair's fallback, unless it was
        # the fallback itself (its replacement is still unused).
        new.previous_refresh, new.previous_until = kept
        counters.refreshes += 1
        return self._pair_answer(shop, new)

    def _client_credentials(self, shop: str) -> Answer:
        record = self.shops.get(shop)
        counters = self.counters(shop)
        if record is not None and not record.installed:
            counters.mints_rejected += 1
            return Answer.error(401, "invalid_request", "The app is not installed on this shop")
        minted = self.new_minted(shop)
        counters.mints += 1
        return Answer.json(
            200,
            {
                "access_token": minted.access,
                "scope": self.shop(shop).scope,
                "expires_in": seconds(minted.expires_at - self.settings.clock()),
            },
        )

    def _code(self, shop: str, form: Mapping[str, str]) -> Answer:
        code = form.get("code", "")
        grant = self._codes.get(code)
        if grant is None or grant.shop != shop:
            return Answer.error(400, "invalid_request", _CODE_USED)
        del self._codes[code]
        if self.settings.clock() >= grant.expires_at:
            return Answer.error(400, "invalid_request", _CODE_USED)
        self.counters(shop).codes_exchanged += 1
        if grant.online:
            return self._online_answer(shop, self.new_online(shop, grant.user_id, grant.scope))
        if truthy(form.get("expiring")):
            return self._pair_answer(shop, self.issue_pair(shop))
        return self._non_expiring_answer(shop, self.new_non_expiring(shop))

    def _exchange(self, shop: str, form: Mapping[str, str]) -> Answer:  # noqa: PLR0911 - one answer per case
        subject_type = form.get("subject_token_type")
        subject = form.get("subject_token", "")
        requested = form.get("requested_token_type")
        if subject_type == OFFLINE_TOKEN:
            return self._migrate(shop, subject, form)
        if subject_type != ID_TOKEN or not subject:
            return Answer.error(400, "invalid_request", "Unsupported or missing subject_token_type")
        if requested not in (ONLINE_TOKEN, OFFLINE_TOKEN):
            return Answer.error(400, "invalid_request", "Unsupported requested_token_type")
        counters = self.counters(shop)
        try:
            claims = check_session_token(
                subject,
                shop=shop,
                client_id=self.settings.client_id,
                secrets=self._secrets(),
                now=self.settings.clock(),
            )
        except SessionTokenRejected as exc:
            counters.session_tokens_rejected += 1
            return Answer.error(400, "invalid_subject_token", str(exc))
        user = str(claims["sub"])
        if requested == ONLINE_TOKEN and not user.isdigit():
            counters.session_tokens_rejected += 1
            return Answer.error(400, "invalid_subject_token", "sub is not a staff user id")
        counters.token_exchanges += 1
        record = self.shop(shop)
        # A valid session token means the merchant has the app open: installed.
        record.installed = True
        if requested == ONLINE_TOKEN:
            return self._online_answer(shop, self.new_online(shop, int(user), record.scope))
        if truthy(form.get("expiring")):
            return self._pair_answer(shop, self.issue_pair(shop))
        return self._non_expiring_answer(shop, self.new_non_expiring(shop))

    def _migrate(self, shop: str, subject: str, form: Mapping[str, str]) -> Answer:
        if form.get("requested_token_type") != OFFLINE_TOKEN or not truthy(form.get("expiring")):
            return Answer.error(
                400,
                "invalid_request",
                "Migration takes requested_token_type offline-access-token and expiring=1",
            )
        record = self.shops.get(shop)
        now = self.settings.clock()
        counters = self.counters(shop)
        if (
            record is not None
            and record.installed
            and record.non_expiring is not None
            and same(record.non_expiring, subject)
            and self._non_expiring_alive(now)
        ):
            pair = self.issue_pair(shop)
            pair.migrated_from, pair.migrated_until = subject, now + MIGRATION_RETRY_WINDOW
            counters.migrations += 1
            return self._pair_answer(shop, pair)
        current = None if record is None else record.pair
        if (
            current is not None
            and current.migrated_from is not None
            and same(current.migrated_from, subject)
            and now < current.migrated_until
        ):
            # A retry after a lost answer: the same pair; the access token's
            # life is extended if needed, the refresh token's never.
            if now >= current.expires_at:
                current.expires_at = now + self.settings.access_lifetime
            counters.migrations += 1
            return self._pair_answer(shop, current)
        return Answer.error(
            400, "invalid_subject_token", "The offline access token is invalid or revoked"
        )

    # -- answers -------------------------------------------------------------------------

    def _pair_answer(self, shop: str, pair: _Pair) -> Answer:
        now = self.settings.clock()
        return Answer.json(
            200,
            {
                "access_token": pair.access,
                "scope": self.shop(shop).scope,
                "expires_in": seconds(pair.expires_at - now),
                "refresh_token": pair.refresh,
                "refresh_token_expires_in": seconds(pair.refresh_expires_at - now),
            },
        )

    def _non_expiring_answer(self, shop: str, token: str) -> Answer:
        return Answer.json(200, {"access_token": token, "scope": self.shop(shop).scope})

    def _online_answer(self, shop: str, token: str) -> Answer:
        online = self.shop(shop).online[token]
        user_id = online.user_id
        return Answer.json(
            200,
            {
                "access_token": token,
                "scope": online.scope,
                "expires_in": seconds(online.expires_at - self.settings.clock()),
                "associated_user_scope": online.scope,
                "associated_user": {
                    "id": user_id,
                    "first_name": "Fake",
                    "last_name": f"User {user_id}",
                    "email": f"user{user_id}@example.com",
                    "email_verified": True,
                    "account_owner": user_id == 1,
                    "locale": "en",
                    "collaborator": False,
                },
            },
        )

    # -- the Admin API --------------------------------------------------------------------

    def api_call(self, shop: str, access_token: str, data: object) -> Answer:
        """Answer an Admin API call: ``data`` for a valid token, else 401 (both counted).

        A 401 is counted as expired, revoked or (neither) unknown: see `TokenCheck`.
        """
        counters = self.counters(shop)
        counters.api_calls += 1
        check = self.check(shop, access_token)
        if check is TokenCheck.VALID:
            pair = self.shops[shop].pair
            if pair is not None and same(pair.access, access_token):
                # The new pair's first use: the refresh token it replaced dies.
                pair.previous_refresh = None
            return Answer.json(200, data)
        counters.api_calls_rejected += 1
        counters.api_calls_expired += check is TokenCheck.EXPIRED
        counters.api_calls_revoked += check is TokenCheck.REVOKED
        return Answer.json(401, {"errors": API_UNAUTHORIZED})
