"""Rows: one `Token` as the columns the SQL stores write, and strict reading back.

Both SQL stores keep one row per key with the same columns. Reading is
strict: a row a human or a bug has damaged (a wrong type, an unknown kind, a
datetime out of range, an empty access token) raises `PersistenceError`,
never a `TypeError` from deep inside, and never a half-valid `Token`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Final

from .._errors import PersistenceError
from .._keys import TokenKey, TokenKind
from .._token import Token

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping, Sequence

#: The columns written for each key, in order (generation and updated_at are
#: maintained by the stores' SQL).
WRITE_COLUMNS: Final = (
    "key",
    "kind",
    "shop",
    "subject",
    "access_token",
    "refresh_token",
    "scope",
    "expires_at",
    "refresh_token_expires_at",
    "associated_user_id",
    "associated_user_scope",
    "obtained_at",
)
#: The columns read back into a `Token`, in order.
READ_COLUMNS: Final = (
    "kind",
    "access_token",
    "refresh_token",
    "scope",
    "expires_at",
    "refresh_token_expires_at",
    "associated_user_id",
    "associated_user_scope",
    "obtained_at",
)
#: The column added last (tables created before it lack it until upgraded).
OBTAINED_AT: Final = "obtained_at"

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
#: Keys per query when listing (keyset pagination: ``key > after ... LIMIT``).
LIST_BATCH: Final = 500
#: Keys per query when loading many (``IN (...)``: under SQLite's oldest limit of 999).
LOAD_BATCH: Final = 500
_MICROSECOND: Final = timedelta(microseconds=1)


def to_micros(value: datetime) -> int:
    """Microseconds since the epoch, exactly (integer arithmetic, no float)."""
    return (value - EPOCH) // _MICROSECOND


def from_micros(value: object) -> datetime:
    """The aware UTC datetime ``value`` microseconds after the epoch.

    Raises:
        TypeError: ``value`` is not an int.
        ValueError: ``value`` is out of datetime's range.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        msg = f"expected integer microseconds, found {type(value).__name__}"
        raise TypeError(msg)
    try:
        return EPOCH + timedelta(microseconds=value)
    except OverflowError:
        msg = "microseconds out of range"
        raise ValueError(msg) from None


def aware_utc(value: object) -> datetime:
    """An aware datetime from a driver, in UTC.

    Raises:
        TypeError: ``value`` is not an aware datetime.
    """
    if not isinstance(value, datetime) or value.utcoffset() is None:
        msg = f"expected an aware datetime, found {type(value).__name__}"
        raise TypeError(msg)
    return value.astimezone(UTC)


def encode(key: TokenKey, token: Token, when: Callable[[datetime], object]) -> tuple[object, ...]:
    """The `WRITE_COLUMNS` values of ``token`` under ``key``.

    Args:
        key: The token's key (its ``str`` is the primary key).
        token: The pair to store.
        when: How this store writes a datetime (never called with None).
    """
    return (
        str(key),
        key.kind.value,
        key.shop,
        key.subject,
        token.access_token,
        token.refresh_token,
        token.scope,
        None if token.expires_at is None else when(token.expires_at),
        None if token.refresh_token_expires_at is None else when(token.refresh_token_expires_at),
        token.associated_user_id,
        token.associated_user_scope,
        None if token.obtained_at is None else when(token.obtained_at),
    )


def _expect(value: object, kind: type, name: str, *, optional: bool) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, kind):
        found = "NULL" if value is None else type(value).__name__
        msg = f"{name} is {found}, expected {kind.__name__}"
        raise TypeError(msg)


_KINDS: Final = frozenset(k.value for k in TokenKind)


def _check_kind(kind: object, key: TokenKey) -> None:
    if kind not in _KINDS:
        msg = "unknown token kind"
        raise ValueError(msg)
    if kind != key.kind.value:
        msg = f"kind {str(kind)[:40]!a} does not match the key"
        raise ValueError(msg)


def decode(key: TokenKey, row: Sequence[object], when: Callable[[object], datetime]) -> Token:
    """The `Token` stored in ``row`` (the `READ_COLUMNS`), read strictly.

    Args:
        key: The key the row was read for.
        row: The values of `READ_COLUMNS`.
        when: How this store reads a non-NULL datetime (raises TypeError or
            ValueError).

    Raises:
        PersistenceError: The row is corrupt. The message names the field,
            never a value (the values are secrets).
    """
    kind, access, refresh, scope, expires, refresh_expires, user_id, user_scope, obtained = row
    field = "kind"
    try:
        _check_kind(kind, key)
        for field, value, kind_of, optional in (
            ("access_token", access, str, False),
            ("refresh_token", refresh, str, True),
            ("scope", scope, str, False),
            ("associated_user_id", user_id, int, True),
            ("associated_user_scope", user_scope, str, True),
        ):
            _expect(value, kind_of, field, optional=optional)
        field = "expires_at"
        expires_at = None if expires is None else when(expires)
        field = "refresh_token_expires_at"
        refresh_token_expires_at = None if refresh_expires is None else when(refresh_expires)
        field = "obtained_at"
        obtained_at = None if obtained is None else when(obtained)
        field = "token"
        return Token(
            access_token=access,  # type: ignore[arg-type]  # checked above
            refresh_token=refresh,  # type: ignore[arg-type]
            scope=scope,  # type: ignore[arg-type]
            expires_at=expires_at,
            refresh_token_expires_at=refresh_token_expires_at,
            associated_user_id=user_id,  # type: ignore[arg-type]
            associated_user_scope=user_scope,  # type: ignore[arg-type]
            obtained_at=obtained_at,
        )
    except (TypeError, ValueError) as exc:
        # Every message here is ours or Token's, and none quotes a value.
        raise PersistenceError(
            f"stored row for {key} is corrupt ({field}: {exc})", key=key
        ) from None


def decode_many(
    asked: Mapping[str, TokenKey],
    rows: Iterable[Sequence[object]],
    when: Callable[[object], datetime],
) -> dict[TokenKey, Token]:
    """The tokens of ``rows`` (each a key's text, then the `READ_COLUMNS`).

    Args:
        asked: The keys asked for, by their text (``str(key)``).
        rows: The rows found.
        when: How this store reads a non-NULL datetime.

    Raises:
        PersistenceError: A row is corrupt (as `decode`).
    """
    found: dict[TokenKey, Token] = {}
    for row in rows:
        key = asked.get(row[0])  # type: ignore[call-overload]  # the key column is text
        if key is not None:
            found[key] = decode(key, row[1:], when)
    return found


def parse_key(text: object) -> TokenKey:
    """The `TokenKey` of a stored primary key.

    Raises:
        PersistenceError: The stored key is not a valid key.
    """
    if not isinstance(text, str):
        raise PersistenceError(f"stored key is {type(text).__name__}, not text")
    try:
        return TokenKey.parse(text)
    except ValueError:
        raise PersistenceError(f"stored key {text[:120]!a} is not a valid token key") from None


async def keys_in_pages(
    page: Callable[[str], Awaitable[Sequence[object]]],
) -> AsyncGenerator[TokenKey, None]:
    """Yield every stored key, asking ``page(after)`` for the next `LIST_BATCH` after ``after``.

    Raises:
        PersistenceError: A stored key is invalid (or ``page`` failed).
    """
    after = ""
    while True:
        texts = await page(after)
        for text in texts:
            yield parse_key(text)
        if len(texts) < LIST_BATCH:
            return
        after = str(texts[-1])
