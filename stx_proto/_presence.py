"""Phoenix Presence: ``presence_state`` / ``presence_diff`` sync, as phoenix.js does it.

Theory of operation
-------------------
The server describes who is present as a map ``key -> {"metas": [meta, ...], ...}`` where every
meta carries a ``phx_ref``. It sends the whole map once per join (``presence_state``) and then
changes (``presence_diff``, ``{"joins": {...}, "leaves": {...}}``). The functions here are the
pure algorithm of phoenix.js ``presence.js`` (``syncState``, ``syncDiff``, ``list``); the
:class:`Presence` class is its per-channel tracker, with the join_ref check that queues diffs
which arrive before the state of the current join.

What differs from phoenix.js, on purpose:

* Nothing passed in is ever mutated, and nothing returned shares a mutable object with a
  payload. The state is copy-on-write: a presence dict or meta list that is in a returned state
  is never changed afterwards, so every state is a snapshot. (phoenix.js mutates ``newState`` in
  ``syncState`` and presence objects of the current state in ``syncDiff``.)
* Instead of calling ``onJoin``/``onLeave`` while it works, each function returns the joins and
  leaves, in the order phoenix.js would have called the callbacks: all joins, then all leaves.
* Malformed server data never raises; the bad part is skipped (see :func:`sync_state`).
* Keys are plain dict keys, so ``"__proto__"`` and friends need no care. The order is the
  insertion order of the dict; phoenix.js (a JS object) puts array-index-like keys such as
  ``"7"`` first, in numeric order.

The objects in a state and in the returned joins and leaves are shared where that is safe for
this module (unchanged presences, meta dicts). Callers must treat them as read-only.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from typing import Any, TypeVar, overload

import attrs

__all__ = [
    "Presence",
    "PresenceJoin",
    "PresenceLeave",
    "PresenceState",
    "PresenceUpdate",
    "list_presences",
    "sync_diff",
    "sync_state",
]

T = TypeVar("T")

PresenceState = dict[str, dict[str, Any]]
"""``key -> {"metas": [meta, ...], ...}``; every meta has a ``str`` ``phx_ref``."""

PresenceJoin = tuple[str, "dict[str, Any] | None", dict[str, Any]]
"""``(key, current presence or None, joined presence)``: phoenix.js ``onJoin`` arguments."""

PresenceLeave = tuple[str, dict[str, Any], dict[str, Any]]
"""``(key, current presence after removal, left presence)``: phoenix.js ``onLeave`` arguments.
The key is gone from the state when the current presence's ``metas`` is empty."""

OnJoin = Callable[[str, "dict[str, Any] | None", dict[str, Any]], object]
OnLeave = Callable[[str, dict[str, Any], dict[str, Any]], object]
OnSync = Callable[[], object]

# Most levels of nested dicts and lists accepted in one presence (the presence dict is level 1,
# its metas list level 2, each meta level 3). It keeps the recursive clone far from Python's
# recursion limit, so a hostile payload cannot make it raise.
_MAX_DEPTH = 100


# Leaf types of decoded JSON: shared, not copied, and checked inline to save a call per leaf.
_SCALARS = frozenset((str, int, float, bool, type(None)))


class _TooDeepError(Exception):
    """A presence nests deeper than ``_MAX_DEPTH``; it is skipped as malformed."""


def _clone(value: Any, depth: int) -> Any:
    """Copy JSON data at nesting level ``depth``: dicts and lists are copied, anything else is
    immutable and shared. Raises _TooDeepError past ``_MAX_DEPTH``."""
    if isinstance(value, dict):
        if depth > _MAX_DEPTH:
            raise _TooDeepError
        depth += 1
        return {k: v if type(v) in _SCALARS else _clone(v, depth) for k, v in value.items()}
    if isinstance(value, list):
        if depth > _MAX_DEPTH:
            raise _TooDeepError
        depth += 1
        return [v if type(v) in _SCALARS else _clone(v, depth) for v in value]
    return value


def _clean_presence(value: Any) -> dict[str, Any] | None:
    """Return a clone of a presence from the server keeping only well-formed metas.

    Returns None (skip this entry) when it is not a dict, its ``metas`` is missing or not a
    list, no meta is left, or it nests more than ``_MAX_DEPTH`` levels deep.
    """
    if not isinstance(value, dict):
        return None
    metas = value.get("metas")
    if not isinstance(metas, list):
        return None
    try:
        clean = [
            _clone(meta, 3)
            for meta in metas
            if isinstance(meta, dict) and isinstance(meta.get("phx_ref"), str)
        ]
        if not clean:
            return None
        return {k: clean if k == "metas" else _clone(v, 2) for k, v in value.items()}
    except _TooDeepError:
        return None


def _clean_map(value: Any) -> dict[str, dict[str, Any]]:
    """Clean a ``key -> presence`` map from the server; anything but a dict counts as empty."""
    if not isinstance(value, dict):
        return {}
    clean: dict[str, dict[str, Any]] = {}
    for key, presence in value.items():
        cleaned = _clean_presence(presence)
        if cleaned is not None:
            clean[key] = cleaned
    return clean


def _apply(
    state: PresenceState,
    joins: dict[str, dict[str, Any]],
    leaves: dict[str, dict[str, Any]],
) -> tuple[list[PresenceJoin], list[PresenceLeave]]:
    """phoenix.js ``syncDiff`` on clean data: update the dict ``state`` in place.

    Only the outer dict is changed; a presence found in it is replaced, never mutated.
    """
    join_list: list[PresenceJoin] = []
    leave_list: list[PresenceLeave] = []
    for key, joined in joins.items():
        current = state.get(key)
        if current is None:
            state[key] = {**joined, "metas": list(joined["metas"])}
        else:
            joined_refs = {meta["phx_ref"] for meta in joined["metas"]}
            kept = [meta for meta in current["metas"] if meta["phx_ref"] not in joined_refs]
            state[key] = {**joined, "metas": kept + joined["metas"]}
        join_list.append((key, current, joined))
    for key, left in leaves.items():
        current = state.get(key)
        if current is None:
            continue
        left_refs = {meta["phx_ref"] for meta in left["metas"]}
        remaining = [meta for meta in current["metas"] if meta["phx_ref"] not in left_refs]
        current = {**current, "metas": remaining}
        leave_list.append((key, current, left))
        if remaining:
            state[key] = current
        else:
            del state[key]
    return join_list, leave_list


def _sync_clean_state(
    state: PresenceState, new_state: dict[str, dict[str, Any]]
) -> tuple[PresenceState, list[PresenceJoin], list[PresenceLeave]]:
    """phoenix.js ``syncState`` with an already cleaned ``new_state`` (which it may share)."""
    result: PresenceState = {key: _clone(presence, 1) for key, presence in state.items()}
    joins: dict[str, dict[str, Any]] = {}
    leaves: dict[str, dict[str, Any]] = {}
    for key, presence in result.items():
        if key not in new_state:
            leaves[key] = presence
    for key, new_presence in new_state.items():
        current = result.get(key)
        if current is None:
            joins[key] = new_presence
            continue
        new_refs = {meta["phx_ref"] for meta in new_presence["metas"]}
        cur_refs = {meta["phx_ref"] for meta in current["metas"]}
        joined = [meta for meta in new_presence["metas"] if meta["phx_ref"] not in cur_refs]
        left = [meta for meta in current["metas"] if meta["phx_ref"] not in new_refs]
        if joined:
            joins[key] = {**new_presence, "metas": joined}
        if left:
            leaves[key] = {**current, "metas": left}
    join_list, leave_list = _apply(result, joins, leaves)
    return result, join_list, leave_list


def sync_state(
    state: PresenceState, new_state: Any
) -> tuple[PresenceState, list[PresenceJoin], list[PresenceLeave]]:
    """Bring ``state`` to the full server state ``new_state`` (a ``presence_state`` payload).

    Returns ``(new state, joins, leaves)``. A key missing from ``new_state`` leaves with all
    its metas; for a key in both, only metas whose ``phx_ref`` is new join and only metas
    whose ``phx_ref`` is gone leave. Metas kept from before come first, then joined ones.
    Neither argument is mutated, and the new state shares no object with either.

    ``state`` must be a state made by this module. ``new_state`` comes from the server and is
    cleaned, never raising: a ``new_state`` that is not a dict is ignored (the result equals
    ``state``, with no joins or leaves); a presence that is not a dict, whose ``metas`` is
    missing or not a list, that has more than 100 levels of nested dicts and lists (itself
    being level 1), or that has no meta left is treated as absent; a meta that is not a dict
    or has no ``str`` ``phx_ref`` is dropped.
    """
    if not isinstance(new_state, dict):
        return {key: _clone(presence, 1) for key, presence in state.items()}, [], []
    return _sync_clean_state(state, _clean_map(new_state))


def _clean_diff(diff: Any) -> dict[str, dict[str, dict[str, Any]]] | None:
    if not isinstance(diff, dict):
        return None
    return {"joins": _clean_map(diff.get("joins")), "leaves": _clean_map(diff.get("leaves"))}


def sync_diff(
    state: PresenceState, diff: Any
) -> tuple[PresenceState, list[PresenceJoin], list[PresenceLeave]]:
    """Apply a ``presence_diff`` payload ``{"joins": {...}, "leaves": {...}}`` to ``state``.

    Returns ``(new state, joins, leaves)``. All joins are applied first: a joined presence
    replaces the current one, with the current metas whose ``phx_ref`` is not re-joined kept
    in front. Then the leaves: the left refs are removed from the current presence (a leave
    for a key not present is skipped), and a key with no meta left is deleted. Neither
    argument is mutated; unchanged presences are shared between ``state`` and the result.

    ``state`` must be a state made by this module. ``diff`` comes from the server and is
    cleaned, never raising: a ``diff`` that is not a dict, and a ``joins`` or ``leaves`` that
    is missing or not a dict, count as empty; entries and metas are cleaned as in
    :func:`sync_state` (a skipped entry neither joins nor leaves).
    """
    clean = _clean_diff(diff)
    result = dict(state)
    if clean is None:
        return result, [], []
    join_list, leave_list = _apply(result, clean["joins"], clean["leaves"])
    return result, join_list, leave_list


@overload
def list_presences(state: PresenceState, chooser: None = None) -> list[dict[str, Any]]: ...
@overload
def list_presences(
    state: PresenceState, chooser: Callable[[str, dict[str, Any]], T]
) -> list[T]: ...
def list_presences(
    state: PresenceState, chooser: Callable[[str, dict[str, Any]], Any] | None = None
) -> list[Any]:
    """Return ``chooser(key, presence)`` for every key in insertion order (phoenix.js ``list``).

    Without a chooser, returns the presences themselves (shared with ``state``: read-only).
    """
    if chooser is None:
        return list(state.values())
    return [chooser(key, presence) for key, presence in state.items()]


@attrs.frozen(slots=True)
class PresenceUpdate:
    """What one presence event did.

    ``joins`` and ``leaves`` are in phoenix.js callback order within each (for a state event:
    the state's, then each queued diff's). ``synced`` is True when phoenix.js would call
    ``onSync`` (a state or a diff was applied), False when nothing was applied (a diff was
    queued, or a payload that is not a dict was ignored).
    """

    joins: tuple[PresenceJoin, ...]
    leaves: tuple[PresenceLeave, ...]
    synced: bool


_NOTHING = PresenceUpdate((), (), synced=False)


class Presence:
    """The presence tracker of one channel (phoenix.js ``Presence``), without the channel.

    Feed it every message of the channel with :meth:`handle`, passing the channel's current
    join_ref. Diffs that arrive before the state of the current join (first join, or after a
    rejoin) are queued and applied right after that state.
    """

    __slots__ = (
        "_join_ref",
        "_max_pending",
        "_on_join",
        "_on_leave",
        "_on_sync",
        "_pending",
        "_state",
        "diff_event",
        "dropped_diffs",
        "state_event",
    )

    def __init__(
        self,
        *,
        state_event: str = "presence_state",
        diff_event: str = "presence_diff",
        max_pending_diffs: int = 10_000,
    ) -> None:
        self.state_event = state_event
        self.diff_event = diff_event
        # Diffs wait for the state in a bounded queue: a server that never sends the state
        # must not grow it forever. The oldest are dropped first (the state supersedes them)
        # and counted.
        self._max_pending = max_pending_diffs
        self.dropped_diffs = 0
        self._state: PresenceState = {}
        self._join_ref: str | None = None
        self._pending: builtins.list[dict[str, Any]] = []
        self._on_join: OnJoin | None = None
        self._on_leave: OnLeave | None = None
        self._on_sync: OnSync | None = None

    @property
    def state(self) -> PresenceState:
        """The current state. Do not mutate it.

        Each applied event installs a new dict and never changes an old one, so a state taken
        here stays as it was (a snapshot).
        """
        return self._state

    @property
    def join_ref(self) -> str | None:
        """The channel join_ref whose ``presence_state`` was last applied (None before one)."""
        return self._join_ref

    @property
    def pending_diffs(self) -> tuple[dict[str, Any], ...]:
        """Diffs queued until the next state, cleaned (``{"joins": ..., "leaves": ...}``)."""
        return tuple(self._pending)

    def in_pending_sync_state(self, channel_join_ref: str | None) -> bool:
        """True when diffs must wait: no state applied yet, or it was for another join."""
        return not self._join_ref or self._join_ref != channel_join_ref

    def on_join(self, callback: OnJoin | None) -> None:
        """Replace the callback called as ``callback(key, current or None, joined)``."""
        self._on_join = callback

    def on_leave(self, callback: OnLeave | None) -> None:
        """Replace the callback called as ``callback(key, current after removal, left)``."""
        self._on_leave = callback

    def on_sync(self, callback: OnSync | None) -> None:
        """Replace the callback called with no argument after a state or diff is applied."""
        self._on_sync = callback

    def handle(
        self, event: str, payload: Any, channel_join_ref: str | None, *, notify: bool = True
    ) -> PresenceUpdate | None:
        """Handle one channel message; return None when ``event`` is not a presence event.

        A state event records ``channel_join_ref`` as :attr:`join_ref`, syncs to the payload,
        then applies and clears the queued diffs. A diff event is queued while
        :meth:`in_pending_sync_state`, else applied. A payload that is not a dict is ignored
        (nothing changes; ``synced`` is False); other malformed parts are skipped as
        :func:`sync_state` says.

        The new state is computed whole and installed before any callback runs, so callbacks
        see the state after the whole event (phoenix.js shows them the state before it). An
        exception from a callback propagates; the tracker is consistent and the remaining
        callbacks of this event are not called.
        With ``notify=False`` no callback is called (the
        client core uses that: it reports changes as events and never runs user code while
        it is handling bytes).
        """
        if event == self.state_event:
            if not isinstance(payload, dict):
                return _NOTHING
            state, state_joins, state_leaves = _sync_clean_state(self._state, _clean_map(payload))
            steps = [(state_joins, state_leaves)]
            steps.extend(_apply(state, diff["joins"], diff["leaves"]) for diff in self._pending)
            joins = [join for step_joins, _ in steps for join in step_joins]
            leaves = [leave for _, step_leaves in steps for leave in step_leaves]
            self._join_ref = channel_join_ref
            self._state = state
            self._pending = []
        elif event == self.diff_event:
            clean = _clean_diff(payload)
            if clean is None:
                return _NOTHING
            if self.in_pending_sync_state(channel_join_ref):
                pending = self._pending
                pending.append(clean)
                if len(pending) > self._max_pending:
                    del pending[0]
                    self.dropped_diffs += 1
                return _NOTHING
            state = dict(self._state)
            joins, leaves = _apply(state, clean["joins"], clean["leaves"])
            steps = [(joins, leaves)]
            self._state = state
        else:
            return None
        if not notify:
            return PresenceUpdate(tuple(joins), tuple(leaves), synced=True)
        # Read once, as phoenix.js does: a callback replaced mid-event applies from the next.
        on_join, on_leave, on_sync = self._on_join, self._on_leave, self._on_sync
        for step_joins, step_leaves in steps:
            if on_join is not None:
                for join in step_joins:
                    on_join(*join)
            if on_leave is not None:
                for leave in step_leaves:
                    on_leave(*leave)
        if on_sync is not None:
            on_sync()
        return PresenceUpdate(tuple(joins), tuple(leaves), synced=True)

    def list(
        self, chooser: Callable[[str, dict[str, Any]], Any] | None = None
    ) -> builtins.list[Any]:
        """:func:`list_presences` of the current state."""
        return list_presences(self._state, chooser)

    def reset(self) -> None:
        """Forget the state, join_ref and queued diffs (the channel is closed for good).

        The event names and callbacks stay.
        """
        self._state = {}
        self._join_ref = None
        self._pending = []
