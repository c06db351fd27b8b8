"""The token manager's core: decisions, key states, single flight, alarms, supervision.

Read in this order: `_decision` (the one pure decision function), `_state`
(a key's state machine), `_flight` and `_alarms` (the two performance
primitives), `_store` (the store adapter), `_context` (what the parts share),
`_rotation` (single flight and backoff), `_exchange` (one refresh under the
locks: re-read, decide, rotate, save, commit, install), `_contention` and
`_saves` (stores shared with other processes, saves that failed),
`_supervision` (keepers and the sweeper), `_loading` (first loads, one key
at a time or a fleet's warm-up in batches), and `_manager` (the public
`TokenManager`).
"""
