"""How the command reports failures: one line on stderr, a non-zero status, no traceback.

Expected failures (bad input, a store that cannot be read, Shopify refusing
a grant) become `click.ClickException` (status 1) or `click.UsageError`
(status 2), shown by click as ``Error: ...``. Anything else is a bug and
keeps its traceback.

Messages come from shoptoken's own errors, which never contain a secret,
and are folded onto one line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

import click
import trio

from .._errors import ShopTokenError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

T = TypeVar("T")

#: Failures that are the user's input or environment, never shoptoken's bugs.
EXPECTED: tuple[type[BaseException], ...] = (click.ClickException, ShopTokenError, OSError)


def one_line(text: str, *, limit: int = 300) -> str:
    """``text`` with its whitespace runs folded to single spaces, cut at ``limit``."""
    folded = " ".join(text.split())
    return folded if len(folded) <= limit else folded[: limit - 3] + "..."


def as_click_error(exc: BaseException) -> click.ClickException:
    """The `click.ClickException` that reports an expected failure."""
    if isinstance(exc, click.ClickException):
        return exc
    return click.ClickException(one_line(str(exc) or type(exc).__name__))


def _first_expected(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The first leaf of ``group`` if every leaf is an expected failure, else None."""
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    if leaves and all(isinstance(leaf, EXPECTED) for leaf in leaves):
        return leaves[0]
    return None


def run_trio(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """Run ``fn(*args)`` under trio, turning expected failures into click errors.

    Raises:
        click.ClickException: An expected failure, to be shown on one line.
    """
    try:
        return trio.run(fn, *args)
    except BaseExceptionGroup as group:
        leaf = _first_expected(group)
        if leaf is None:
            raise
        raise as_click_error(leaf) from None
    except EXPECTED as exc:
        raise as_click_error(exc) from None
