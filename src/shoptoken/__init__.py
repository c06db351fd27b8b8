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
    InvalidWebhook,
    LockTimeout,
    NoToken,
    PersistenceError,
    ReauthorizationRequired,
    RefreshFailed,
    ServiceTimeout,
    ShopTokenError,
)
from ._events import EventHook, EventKind, TokenEvent
from ._keys import TokenKey, TokenKind
from ._oauth._admin import ShopifyOAuth
from ._oauth._customer import CustomerAccountOAuth
from ._oauth._discovery import CustomerAccountEndpoints
from ._oauth._pkce import new_pkce, pkce_challenge
from ._oauth._session_token import SessionTokenClaims
from ._oauth._webhooks import Webhook
from ._persistence import (
    LockedToken,
    SupportsDelete,
    SupportsDeleteShop,
    SupportsListKeys,
    SupportsLoadMany,
    SupportsLocked,
    TokenCallback,
)
from ._service._aio import AsyncTokenService
from ._service._service import TokenService
from ._token import Token
from ._webhook_handling import Delivery, SeenWebhooks, handle_webhook
from .stores import MemoryStore

__version__ = "0.1.0.dev0"

__all__ = [
    "AsyncTokenService",
    "CustomerAccountEndpoints",
    "CustomerAccountOAuth",
    "Delivery",
    "EventHook",
    "EventKind",
    "InvalidCallback",
    "InvalidSessionToken",
    "InvalidShopDomain",
    "InvalidWebhook",
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
    "SeenWebhooks",
    "ServiceTimeout",
    "SessionTokenClaims",
    "ShopTokenError",
    "ShopifyOAuth",
    "SupportsDelete",
    "SupportsDeleteShop",
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
    "TokenService",
    "WarmUpFigures",
    "Webhook",
    "handle_webhook",
    "new_pkce",
    "open_token_manager",
    "pkce_challenge",
]
