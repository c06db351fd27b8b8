"""The public surface: __all__ is pinned, sorted, and everything in it is importable."""

from __future__ import annotations

import shoptoken
import shoptoken.metrics
import shoptoken.stores
import shoptoken.testing

PUBLIC = [
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


def test_all_is_pinned() -> None:
    """shoptoken.__all__ is exactly the documented public names."""
    assert shoptoken.__all__ == PUBLIC


def test_all_is_sorted_and_importable() -> None:
    """__all__ lists are sorted (case-sensitively) and every name resolves."""
    for module in (shoptoken, shoptoken.metrics, shoptoken.stores, shoptoken.testing):
        assert module.__all__ == sorted(module.__all__)
        for name in module.__all__:
            assert getattr(module, name) is not None


def test_public_names_live_in_private_modules() -> None:
    """Public objects are re-exported from private modules, one public surface."""
    for name in shoptoken.__all__:
        module = getattr(getattr(shoptoken, name), "__module__", "shoptoken._")
        assert module.startswith(("shoptoken._", "shoptoken.stores._")), name


def test_error_tree() -> None:
    """Every operational error derives from ShopTokenError; InvalidShopDomain is a ValueError."""
    for name in shoptoken.__all__:
        obj = getattr(shoptoken, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, shoptoken.ShopTokenError)
    assert issubclass(shoptoken.InvalidShopDomain, ValueError)
