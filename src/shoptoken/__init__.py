"""shoptoken: keeps Shopify OAuth tokens valid inside long-running trio daemons."""

from ._core._loading import WarmUpFigures
from ._core._manager import TokenManager, open_token_manager
from ._core._policy import RefreshPolicy
from ._core._refresher import KindRouter, Refresher
from ._core._statistics import TokenManagerStatistics
from ._errors import (
    InvalidCallback,
    InvalidSessionToken,
    InvalidShopDomain,
    LockTimeout,
    NoToken,
    PersistenceError,
    ReauthorizationRequired,
    RefreshFailed,
    ShopTokenError,
)
from ._events import EventHook, EventKind, TokenEvent
from ._keys import TokenKey, TokenKind
from ._oauth._admin import ShopifyOAuth
from ._oauth._customer import CustomerAccountOAuth
from ._oauth._discovery import CustomerAccountEndpoints
from ._oauth._pkce import new_pkce, pkce_challenge
from ._oauth._session_token import SessionTokenClaims
from ._persistence import (
    LockedToken,
    SupportsDelete,
    SupportsListKeys,
    SupportsLoadMany,
    SupportsLocked,
    TokenCallback,
)
from ._token import Token
from .stores import MemoryStore

__version__ = "0.1.0.dev0"

__all__ = [
    "CustomerAccountEndpoints",
    "CustomerAccountOAuth",
    "EventHook",
    "EventKind",
    "InvalidCallback",
    "InvalidSessionToken",
    "InvalidShopDomain",
    "KindRouter",
    "LockTimeout",
    "LockedToken",
    "MemoryStore",
    "NoToken",
    "PersistenceError",
    "ReauthorizationRequired",
    "RefreshFailed",
    "RefreshPolicy",
    "Refresher",
    "SessionTokenClaims",
    "ShopTokenError",
    "ShopifyOAuth",
    "SupportsDelete",
    "SupportsListKeys",
    "SupportsLoadMany",
    "SupportsLocked",
    "Token",
    "TokenCallback",
    "TokenEvent",
    "TokenKey",
    "TokenKind",
    "TokenManager",
    "TokenManagerStatistics",
    "WarmUpFigures",
    "new_pkce",
    "open_token_manager",
    "pkce_challenge",
]
