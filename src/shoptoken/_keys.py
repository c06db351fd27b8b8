"""TokenKey: which token, for which shop and subject."""

from __future__ import annotations

import enum
import re
from typing import Final

import attrs

from ._errors import InvalidShopDomain

_SUFFIX: Final = ".myshopify.com"
# Shopify's rule for the shop name: alphanumerics and hyphens, not starting
# with a hyphen; a DNS label, so at most 63 characters.
_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
_USER_ID = re.compile(r"[1-9][0-9]{0,19}")


def _printable_id(subject: str) -> bool:
    return bool(subject) and subject.isprintable() and not any(c.isspace() for c in subject)


class TokenKind(enum.Enum):
    """What a token grants access to."""

    OFFLINE = "offline"
    """The app's Admin API token for a shop (one per shop)."""
    ONLINE = "online"
    """An Admin API token bound to one staff user's session."""
    CUSTOMER = "customer"
    """A Customer Account API token bound to one customer."""
    CLIENT_CREDENTIALS = "client_credentials"
    """The app's Admin API token for one of its organization's own shops,
    minted with the client credentials grant (no refresh token: minted again)."""


#: Kinds with one token per shop: their keys take no subject.
_SHOP_WIDE: Final = frozenset({TokenKind.OFFLINE, TokenKind.CLIENT_CREDENTIALS})

# str(key) is computed per refresh schedule (the jitter hash) and per store
# row; an Enum's .value is a descriptor lookup, several times a dict's cost.
_KIND_TEXT = {kind: kind.value for kind in TokenKind}


def normalize_shop(shop: str) -> str:
    """Return the canonical ``name.myshopify.com`` form of a shop domain.

    A bare name ("my-store") gets the ``.myshopify.com`` suffix; the result is
    lower-cased. Anything that is not exactly a shop name or shop domain
    (another host, a scheme, a path, a port, userinfo, whitespace) is refused:
    shop domains arrive in untrusted query strings.

    Raises:
        InvalidShopDomain: The value is not a valid shop domain.
    """
    if not isinstance(shop, str):
        msg = f"shop must be a str, not {type(shop).__name__}"
        raise InvalidShopDomain(msg)
    # ASCII first: str.lower() maps lookalikes such as the Kelvin sign to "k".
    lowered = shop.lower() if shop.isascii() else ""
    name = lowered.removesuffix(_SUFFIX) if lowered.endswith(_SUFFIX) else lowered
    # "xn--" starts an IDNA (punycode) label: a lookalike of another name.
    if not _NAME.fullmatch(name) or name.startswith("xn--"):
        # Show a bounded, printable excerpt: the input is untrusted.
        shown = ascii(shop[:80])
        msg = f"invalid shop domain {shown}: expected 'name' or 'name.myshopify.com'"
        raise InvalidShopDomain(msg)
    return name + _SUFFIX


# cache_hash: keys are hashed on every valid_token call (the hot path's dict lookup).
@attrs.frozen(cache_hash=True)
class TokenKey:
    """Identifies one token: the shop, its kind and, for per-user kinds, the subject.

    Build keys with `offline`, `online`, `customer` or `client_credentials`;
    `str(key)` is a stable identifier (``offline:my-store.myshopify.com``,
    ``online:my-store.myshopify.com:42``) that `parse` reads back.

    Attributes:
        shop: The normalized shop domain.
        kind: `TokenKind` of the token.
        subject: The user id (online) or customer id (customer); None for the
            shop-wide kinds (offline, client credentials).
    """

    shop: str = attrs.field(converter=normalize_shop)
    kind: TokenKind = attrs.field(validator=attrs.validators.instance_of(TokenKind))
    subject: str | None = None

    def __attrs_post_init__(self) -> None:
        subject = self.subject
        if (self.kind in _SHOP_WIDE) != (subject is None):
            need = "needs a" if subject is None else "takes no"
            msg = f"a {self.kind.value} key {need} subject"
            raise ValueError(msg)
        # Keep str(key) parseable: user ids are positive decimal numbers,
        # customer ids printable without whitespace.
        if self.kind is TokenKind.ONLINE and not _USER_ID.fullmatch(str(subject)):
            msg = f"an online key's subject must be a positive user id, not {subject!r:.40}"
            raise ValueError(msg)
        if self.kind is TokenKind.CUSTOMER and not _printable_id(str(subject)):
            msg = f"a customer key's subject must be a printable id, not {subject!r:.40}"
            raise ValueError(msg)

    @classmethod
    def offline(cls, shop: str) -> TokenKey:
        """Key of a shop's offline (app-wide) Admin API token."""
        return cls(shop, TokenKind.OFFLINE)

    @classmethod
    def online(cls, shop: str, user_id: int) -> TokenKey:
        """Key of a staff user's online Admin API token.

        Raises:
            InvalidShopDomain: Bad shop domain.
            ValueError: ``user_id`` is not a positive int.
        """
        if isinstance(user_id, bool) or not isinstance(user_id, int) or user_id <= 0:
            msg = f"user_id must be a positive int, not {user_id!r}"
            raise ValueError(msg)
        return cls(shop, TokenKind.ONLINE, str(user_id))

    @classmethod
    def customer(cls, shop: str, customer_id: str | int) -> TokenKey:
        """Key of one customer's Customer Account API token.

        Raises:
            InvalidShopDomain: Bad shop domain.
            ValueError: ``customer_id`` is empty or has whitespace.
        """
        subject = str(customer_id)
        if not _printable_id(subject):
            msg = f"customer_id must be a non-empty printable id, not {customer_id!r:.80}"
            raise ValueError(msg)
        return cls(shop, TokenKind.CUSTOMER, subject)

    @classmethod
    def client_credentials(cls, shop: str) -> TokenKey:
        """Key of the app's client-credentials Admin API token for one of its own shops.

        The manager mints such a key's token itself (`ShopifyOAuth.mint`, the
        client credentials grant) and mints it again before it expires: it
        needs no `TokenManager.put_token` and is never "re-authorization
        required" on expiry.

        Raises:
            InvalidShopDomain: Bad shop domain.
        """
        return cls(shop, TokenKind.CLIENT_CREDENTIALS)

    @property
    def mintable(self) -> bool:
        """True when the app can obtain this key's token on its own (client credentials)."""
        return self.kind is TokenKind.CLIENT_CREDENTIALS

    @classmethod
    def parse(cls, text: str) -> TokenKey:
        """Read back a key from `str(key)`; a bare shop means its offline key.

        Raises:
            ValueError: The text is not a key (`InvalidShopDomain` for the shop).
        """
        kind, sep, rest = text.partition(":")
        if not sep:
            return cls.offline(text)
        if kind == TokenKind.OFFLINE.value:
            return cls.offline(rest)
        if kind == TokenKind.CLIENT_CREDENTIALS.value:
            return cls.client_credentials(rest)
        # The shop never contains ":", so the subject may (customer gids do).
        shop, sep, subject = rest.partition(":")
        if kind == TokenKind.ONLINE.value and sep and subject.isdigit():
            return cls.online(shop, int(subject))
        if kind == TokenKind.CUSTOMER.value and sep:
            return cls.customer(shop, subject)
        msg = (
            f"invalid token key {text[:120]!a}: expected 'offline:SHOP', "
            "'online:SHOP:USER_ID', 'customer:SHOP:CUSTOMER_ID' or 'client_credentials:SHOP'"
        )
        raise ValueError(msg)

    def __str__(self) -> str:
        if self.subject is None:
            return f"{_KIND_TEXT[self.kind]}:{self.shop}"
        return f"{_KIND_TEXT[self.kind]}:{self.shop}:{self.subject}"
