"""EncryptedStore: access and refresh tokens encrypted at rest, over any store.

Each secret is sealed with AES-256-GCM under the first configured key and
stored as ``v1:<key id>:<urlsafe base64 of nonce + ciphertext>``; the
associated data binds it to its key and field (``str(key)`` and
``access_token`` / ``refresh_token``), so a ciphertext copied to another row
or field does not decrypt. Everything else (key, kind, scope, expiries)
stays clear, so listing and expiry queries work on the inner store.

The optional capabilities (``delete_tokens``, ``list_keys``, ``load_many``, ``locked``, and
the SQL stores' ``create_schema``) exist on an `EncryptedStore` exactly when
the inner store has them: the manager detects capabilities with ``getattr``,
so a wrapper must not claim a lock its inner store cannot take.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Final, Self, cast

import attrs

from .._errors import PersistenceError

try:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    msg = "EncryptedStore needs the 'crypto' extra: pip install 'shoptoken[crypto]'"
    raise ImportError(msg) from exc

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
    from contextlib import AbstractAsyncContextManager
    from datetime import datetime
    from types import TracebackType

    from .._keys import TokenKey
    from .._persistence import (
        LockedToken,
        SupportsDelete,
        SupportsDeleteShop,
        SupportsListKeys,
        SupportsLoadMany,
        SupportsLocked,
        TokenCallback,
    )
    from .._token import Token

_VERSION: Final = "v1"
_KEY_ID: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_KEY_BYTES: Final = 32
_NONCE_BYTES: Final = 12
_TAG_BYTES: Final = 16
# Present on an EncryptedStore exactly when its inner store has them.
_OPTIONAL: Final = frozenset(
    {"create_schema", "delete_shop", "delete_tokens", "list_keys", "load_many", "locked"}
)


def _validated_keys(keys: Mapping[str, bytes]) -> dict[str, AESGCM]:
    if not isinstance(keys, Mapping) or not keys:
        msg = "keys must be a non-empty mapping of key id to 32-byte key"
        raise ValueError(msg)
    ciphers = {}
    for kid, key in keys.items():
        if not isinstance(kid, str) or not _KEY_ID.fullmatch(kid):
            msg = f"key id {str(kid)[:70]!a} must be 1-64 characters of A-Z a-z 0-9 _ . -"
            raise ValueError(msg)
        if not isinstance(key, bytes) or len(key) != _KEY_BYTES:
            # Never echo the key material.
            msg = f"key {kid!r} must be exactly {_KEY_BYTES} bytes"
            raise ValueError(msg)
        ciphers[kid] = AESGCM(key)
    return ciphers


def _aad(key: TokenKey, field: str) -> bytes:
    return f"shoptoken:{_VERSION}:{key}:{field}".encode()


@attrs.define(eq=False)
class _EncryptedLocked:
    """The inner store's lock handle, decrypting what it read and encrypting what it saves."""

    token: Token | None
    _save: Callable[[Token], Awaitable[None]]

    async def save(self, token: Token) -> None:
        """Encrypt ``token`` and save it through the inner handle, inside its lock."""
        await self._save(token)
        self.token = token


@attrs.define(eq=False, init=False)
class EncryptedStore:
    """Wraps a store so that access and refresh tokens are encrypted at rest.

    Encrypts with the first key of ``keys`` and decrypts with whichever key
    id a value names, so keys rotate by putting a new key first and, once
    every row is rewritten (`reencrypt`, or simply each key's next refresh),
    dropping the old one. A wrong key, a tampered or moved ciphertext, or a
    plaintext value raises `PersistenceError`.

    Args:
        inner: The store that keeps the (encrypted) rows.
        keys: Key id to 32-byte key, in order: the first one encrypts. Key
            ids are 1-64 characters of ``A-Z a-z 0-9 _ . -``.
        accept_plaintext: Read values that are not encrypted as they are (to
            adopt an existing unencrypted store; they are encrypted on their
            next save or by `reencrypt`).
    """

    _inner: TokenCallback
    _ciphers: dict[str, AESGCM] = attrs.field(repr=False)
    _primary: str
    _accept_plaintext: bool

    if TYPE_CHECKING:
        # Present at run time only when the inner store has them (__getattr__).
        async def create_schema(self) -> None: ...
        async def delete_tokens(self, key: TokenKey) -> None: ...
        async def delete_shop(
            self, shop: str, *, before: datetime | None = None
        ) -> list[TokenKey]: ...
        def list_keys(self) -> AsyncIterator[TokenKey]: ...
        async def load_many(self, keys: Sequence[TokenKey]) -> dict[TokenKey, Token]: ...
        def locked(
            self,
            key: TokenKey,
            *,
            timeout: float,
        ) -> AbstractAsyncContextManager[LockedToken]: ...

    def __init__(
        self, inner: TokenCallback, keys: Mapping[str, bytes], *, accept_plaintext: bool = False
    ) -> None:
        self._inner = inner
        self._ciphers = _validated_keys(keys)
        self._primary = next(iter(self._ciphers))
        self._accept_plaintext = accept_plaintext

    @staticmethod
    def generate_key() -> bytes:
        """A new random 32-byte key (from the OS's CSPRNG)."""
        return AESGCM.generate_key(bit_length=256)

    @staticmethod
    def parse_keys(text: str) -> dict[str, bytes]:
        """Keys from ``"kid:BASE64,kid:BASE64"`` (urlsafe base64, first one encrypts).

        The format of ``store_from_url``'s ``encrypt_key_env`` variable.

        Raises:
            ValueError: Malformed text or a key that is not 32 bytes. The
                message never contains key material.
        """
        keys: dict[str, bytes] = {}
        for number, item in enumerate(text.split(","), start=1):
            kid, sep, encoded = item.strip().partition(":")
            try:
                key = base64.b64decode(encoded.strip(), altchars=b"-_", validate=True)
            except (binascii.Error, ValueError):
                key = b""
            if not sep or not _KEY_ID.fullmatch(kid) or len(key) != _KEY_BYTES:
                msg = f"encryption key #{number} is not 'kid:BASE64' with a 32-byte key"
                raise ValueError(msg)
            if kid in keys:
                msg = f"encryption key id {kid!r} appears twice"
                raise ValueError(msg)
            keys[kid] = key
        return keys

    @staticmethod
    def format_key(kid: str, key: bytes) -> str:
        """``"kid:BASE64"``: one entry of `parse_keys`' format."""
        _validated_keys({kid: key})
        return f"{kid}:{base64.urlsafe_b64encode(key).decode()}"

    # -- the TokenCallback --------------------------------------------------------

    async def load_tokens(self, key: TokenKey) -> Token | None:
        """Load from the inner store and decrypt.

        Raises:
            PersistenceError: The inner store failed, or a value does not decrypt.
        """
        stored = await self._inner.load_tokens(key)
        return None if stored is None else self._open(key, stored)

    async def save_tokens(self, key: TokenKey, token: Token) -> None:
        """Encrypt and save through the inner store."""
        await self._inner.save_tokens(key, self._seal(key, token))

    def __getattr__(self, name: str) -> Any:
        # Only reached for attributes the class does not define.
        if name in _OPTIONAL and hasattr(self._inner, name):
            return getattr(self, f"_{name}")
        msg = f"{type(self).__name__!r} object has no attribute {name!r}"
        if name in _OPTIONAL:
            msg += f" (its inner {type(self._inner).__name__} has none)"
        raise AttributeError(msg)

    async def _create_schema(self) -> None:
        await self._inner.create_schema()  # type: ignore[attr-defined]  # present: see __getattr__

    async def _delete_tokens(self, key: TokenKey) -> None:
        await cast("SupportsDelete", self._inner).delete_tokens(key)

    async def _delete_shop(self, shop: str, *, before: datetime | None = None) -> list[TokenKey]:
        return await cast("SupportsDeleteShop", self._inner).delete_shop(shop, before=before)

    def _list_keys(self) -> AsyncIterator[TokenKey]:
        return cast("SupportsListKeys", self._inner).list_keys()

    async def _load_many(self, keys: Sequence[TokenKey]) -> dict[TokenKey, Token]:
        found = await cast("SupportsLoadMany", self._inner).load_many(keys)
        return {key: self._open(key, stored) for key, stored in found.items()}

    @asynccontextmanager
    async def _locked(
        self,
        key: TokenKey,
        *,
        timeout: float,  # noqa: ASYNC109 - SupportsLocked passes the timeout as data
    ) -> AsyncIterator[_EncryptedLocked]:
        inner = cast("SupportsLocked", self._inner)
        async with inner.locked(key, timeout=timeout) as handle:
            stored = handle.token
            token = None if stored is None else self._open(key, stored)

            async def save(new: Token) -> None:
                await handle.save(self._seal(key, new))

            yield _EncryptedLocked(token, save)

    # -- key rotation -------------------------------------------------------------

    async def reencrypt(self, *, timeout: float = 30.0) -> int:  # noqa: ASYNC109 - the lock timeout, passed on
        """Rewrite every row not encrypted with the first key; return how many.

        Each row is rewritten under the inner store's lock, so a refresh
        running meanwhile in any process is never overwritten.

        Raises:
            TypeError: The inner store cannot list keys or lock them.
            LockTimeout: A key stayed locked for ``timeout`` seconds.
            PersistenceError: The inner store failed or a value does not decrypt.
        """
        if not (hasattr(self._inner, "list_keys") and hasattr(self._inner, "locked")):
            msg = "reencrypt() needs an inner store with list_keys() and locked()"
            raise TypeError(msg)
        inner = cast("SupportsLocked", self._inner)
        rewritten = 0
        async for key in self._list_keys():
            async with inner.locked(key, timeout=timeout) as handle:
                stored = handle.token
                if stored is not None and not self._current(stored):
                    await handle.save(self._seal(key, self._open(key, stored)))
                    rewritten += 1
        return rewritten

    # -- lifetime -----------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the inner store, when it can be closed."""
        aclose = getattr(self._inner, "aclose", None)
        if aclose is not None:
            await aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- sealing ------------------------------------------------------------------

    def _current(self, token: Token) -> bool:
        """True when both stored secrets are sealed with the first key (the one that encrypts)."""
        prefix = f"{_VERSION}:{self._primary}:"
        return all(
            value is None or value.startswith(prefix)
            for value in (token.access_token, token.refresh_token)
        )

    def _seal(self, key: TokenKey, token: Token) -> Token:
        refresh = token.refresh_token
        return attrs.evolve(
            token,
            access_token=self._encrypt(key, "access_token", token.access_token),
            refresh_token=None if refresh is None else self._encrypt(key, "refresh_token", refresh),
        )

    def _open(self, key: TokenKey, stored: Token) -> Token:
        refresh = stored.refresh_token
        access = self._decrypt(key, "access_token", stored.access_token)
        try:
            return attrs.evolve(
                stored,
                access_token=access,
                refresh_token=None
                if refresh is None
                else self._decrypt(key, "refresh_token", refresh),
            )
        except ValueError:  # an empty plaintext: only a forged value can decrypt to it
            raise PersistenceError(
                f"stored token of {key} decrypts to an empty value", key=key
            ) from None

    def _encrypt(self, key: TokenKey, field: str, plaintext: str) -> str:
        try:
            data = plaintext.encode()
        except UnicodeEncodeError:  # lone surrogates: no store could keep it either
            raise PersistenceError(f"{field} of {key} is not valid Unicode", key=key) from None
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._ciphers[self._primary].encrypt(nonce, data, _aad(key, field))
        return f"{_VERSION}:{self._primary}:{base64.urlsafe_b64encode(nonce + sealed).decode()}"

    def _decrypt(self, key: TokenKey, field: str, value: str) -> str:
        version, _, rest = value.partition(":")
        if version != _VERSION:
            if self._accept_plaintext:
                return value
            raise PersistenceError(f"stored {field} of {key} is not encrypted", key=key)
        kid, _, encoded = rest.partition(":")
        cipher = self._ciphers.get(kid)
        if cipher is None:
            shown = ascii(kid[:70])
            raise PersistenceError(
                f"stored {field} of {key} is encrypted with key id {shown}, not configured here",
                key=key,
            )
        try:
            blob = base64.b64decode(encoded, altchars=b"-_", validate=True)
        except (binascii.Error, ValueError):
            blob = b""
        if len(blob) < _NONCE_BYTES + _TAG_BYTES:
            raise PersistenceError(f"stored {field} of {key} is not a valid ciphertext", key=key)
        try:
            plaintext = cipher.decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], _aad(key, field))
            return plaintext.decode()
        except (InvalidTag, UnicodeDecodeError):
            raise PersistenceError(
                f"stored {field} of {key} does not decrypt (wrong key, tampered, or moved"
                " from another key)",
                key=key,
            ) from None
