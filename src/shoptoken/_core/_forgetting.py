"""Forgetter: keys leave the manager and the store (an uninstall, a redaction) for good.

The rule, written once: a forgotten key is never served again from memory,
makes no further request, and nothing that was in flight for it puts a pair
back in the store.

1. While the forget runs, its shop (or its keys) is marked in
   ``Core.forgetting``: a first load of such a key finds nothing.
2. Every matching key in memory is dropped at once, without waiting for its
   lock: its keeper ends, the hot path stops serving it, and a refresh in
   flight, whenever Shopify answers, finds its key gone (``is_current``)
   under the key's lock and discards the answer instead of saving it
   (`Exchange` checks before it saves; `PendingSaves` before each retry).
3. The store deletes the pairs (one ``delete_shop`` when it can).
4. A refresh that had its answer before step 2 may be saving it right now,
   under the key's lock: the forget waits for that lock, then deletes the
   key again (a pair derived from a forgotten token: whatever its date).
   With a store that locks across processes, a refresh of another process
   either re-reads after the delete (and finds nothing) or commits before
   the delete runs (and is deleted with the rest).

A shop forgotten ``before`` a time (an uninstall's, whose retry may arrive
after a reinstall) keeps the keys whose token was obtained at or after it,
in memory and in the store (`obtained_before`, the one rule); parked keys
the store kept stay parked.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

import attrs

from .._token import obtained_before

if TYPE_CHECKING:
    from collections.abc import Collection
    from datetime import datetime

    from .._keys import TokenKey
    from .._token import Token
    from ._context import Core


@attrs.define(eq=False)
class Forgetter:
    """Forgets keys, or a whole shop, for one manager."""

    core: Core

    async def forget(
        self,
        keys: Collection[TokenKey] = (),
        *,
        shop: str | None = None,
        before: datetime | None = None,
    ) -> set[TokenKey]:
        """Forget ``keys``, or every key of ``shop`` (obtained ``before``); return those forgotten.

        Raises:
            PersistenceError: The store failed; call again (nothing is served
                from memory meanwhile).
        """
        core = self.core
        core.check_open()
        wanted = frozenset(keys)
        marks: Counter[str | TokenKey] = Counter([shop] if shop is not None else wanted)
        core.forgetting.update(marks)
        try:
            victims = [
                state
                for state in core.states.values()
                if state.key in wanted
                or (
                    state.key.shop == shop
                    and (state.token is None or obtained_before(state.token, before))
                )
            ]
            parked = {
                key: core.parked.pop(key)
                for key in [key for key in core.parked if key.shop == shop or key in wanted]
            }
            # A refresh, a load or a save in flight: it may be writing under the key's lock.
            busy = [state for state in victims if state.busy()]
            held: dict[TokenKey, Token | None] = {s.key: s.token for s in victims}
            for state in victims:
                core.drop(state)
            known = {*wanted, *parked, *held}
            if shop is not None:
                deleted = await core.store.delete_shop(shop, known, before)
            else:
                deleted = {key for key in known if await core.store.delete(key, held.get(key))}
            for state in busy:
                async with state.locked():
                    pass  # its refresh ended: it saved nothing after the drop
                token = held.get(state.key)
                if token is None:  # a load, not a refresh, was in flight
                    await core.store.delete_before(state.key, before)
                else:
                    await core.store.delete(state.key, token)
            # The store decided for parked keys: those it kept (reinstalled) stay parked.
            kept = {k: at for k, at in parked.items() if k not in deleted} if before else {}
            for key, at in kept.items():
                if key not in core.states:
                    core.parked.setdefault(key, at)
            return deleted | set(held) | (parked.keys() - kept.keys())
        finally:
            core.forgetting -= marks
