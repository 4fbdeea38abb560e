"""Presence: every case of shared/protocol/presence_cases.json, scenario 10, malformed payloads,
isolation of inputs and outputs, and hypothesis properties."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stx_proto._presence import (
    Presence,
    PresenceJoin,
    PresenceLeave,
    PresenceState,
    PresenceUpdate,
    list_presences,
    sync_diff,
    sync_state,
)

DATA = Path(__file__).parent / "data" / "presence_cases.json"
SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "protocol" / "presence_cases.json"
CASES: dict[str, Any] = json.loads(DATA.read_text(encoding="utf-8"))


def _pres(*refs: str, **extra: Any) -> dict[str, Any]:
    return {"metas": [{"phx_ref": ref} for ref in refs], **extra}


def _calls(joins: list[PresenceJoin], leaves: list[PresenceLeave]) -> list[dict[str, Any]]:
    """Joins and leaves as the cases write callbacks (joins first, as phoenix.js calls them)."""
    return [{"cb": "onJoin", "key": k, "current": c, "newPres": n} for k, c, n in joins] + [
        {"cb": "onLeave", "key": k, "current": c, "leftPres": left} for k, c, left in leaves
    ]


class Recorder:
    """Records the callbacks of a Presence, in call order."""

    def __init__(self, presence: Presence) -> None:
        self.calls: list[dict[str, Any]] = []
        presence.on_join(self.join)
        presence.on_leave(self.leave)
        presence.on_sync(self.sync)
        self.presence = presence

    def join(self, key: str, current: dict[str, Any] | None, new: dict[str, Any]) -> None:
        self.calls.append({"cb": "onJoin", "key": key, "current": current, "newPres": new})

    def leave(self, key: str, current: dict[str, Any], left: dict[str, Any]) -> None:
        self.calls.append({"cb": "onLeave", "key": key, "current": current, "leftPres": left})

    def sync(self) -> None:
        self.calls.append({"cb": "onSync", "list": self.presence.list()})

    def take(self) -> list[dict[str, Any]]:
        calls, self.calls = self.calls, []
        return calls


def _first_metas(presence: Presence) -> list[Any]:
    return presence.list(lambda _key, pres: pres["metas"][0])


def _no_empty_metas(state: PresenceState) -> None:
    for key, presence in state.items():
        assert presence["metas"], key


# --------------------------------------------------------------------------------------------
# The data file


def test_data_copy_equals_shared_file() -> None:
    if not SHARED.exists():
        pytest.skip("no shared/protocol folder beside the repository")
    assert json.loads(SHARED.read_text(encoding="utf-8")) == CASES


def test_data_file_has_every_section() -> None:
    assert len(CASES["static_cases"]) == 7
    assert len(CASES["list_cases"]) == 2
    assert set(CASES["proto_cases"]) >= {"syncState_join", "syncState_leave_all", "syncDiff"}
    assert len(CASES["instance_cases"]) == 3


# --------------------------------------------------------------------------------------------
# static_cases: syncState / syncDiff


@pytest.mark.parametrize("case", CASES["static_cases"], ids=lambda case: case["test"])
def test_static_case(case: dict[str, Any]) -> None:
    before = copy.deepcopy(case)
    if case["fn"] == "syncState":
        state, joins, leaves = sync_state(case["input_state"], case["input_newState"])
    else:
        assert case["fn"] == "syncDiff"
        state, joins, leaves = sync_diff(case["input_state"], case["input_diff"])
    assert state == case["expected_state"]
    assert _calls(joins, leaves) == case["expected_callbacks_in_order"]
    assert case == before, "inputs were mutated"


@pytest.mark.parametrize("case", CASES["static_cases"], ids=lambda case: case["test"])
def test_static_case_through_instance(case: dict[str, Any]) -> None:
    """The same case on a Presence: callbacks in the listed order, then onSync."""
    presence = Presence()
    presence.handle("presence_state", case["input_state"], "1")
    recorder = Recorder(presence)
    if case["fn"] == "syncState":
        update = presence.handle("presence_state", case["input_newState"], "1")
    else:
        update = presence.handle("presence_diff", case["input_diff"], "1")
    expected = case["expected_callbacks_in_order"]
    sync = {"cb": "onSync", "list": list(case["expected_state"].values())}
    assert recorder.take() == [*expected, sync]
    assert presence.state == case["expected_state"]
    assert update is not None
    assert update.synced
    assert _calls(list(update.joins), list(update.leaves)) == expected


# --------------------------------------------------------------------------------------------
# list_cases


def _chooser(description: str) -> Any:
    if description.startswith("none"):
        return None
    assert description == "(key, {metas: [first, ...rest]}) => first"
    return lambda _key, pres: pres["metas"][0]


@pytest.mark.parametrize("case", CASES["list_cases"], ids=lambda case: case["test"])
def test_list_case(case: dict[str, Any]) -> None:
    assert list_presences(case["state"], _chooser(case["chooser"])) == case["expected"]


def test_list_default_is_the_presences_in_insertion_order() -> None:
    state = {"b": _pres("1"), "a": _pres("2"), "7": _pres("3")}
    assert list_presences(state) == [state["b"], state["a"], state["7"]]
    assert list_presences(state, lambda key, _pres: key) == ["b", "a", "7"]
    assert list_presences({}) == []


# --------------------------------------------------------------------------------------------
# proto_cases: keys that are Object.prototype names in JS


PROTO = CASES["proto_cases"]


def test_proto_keys_sync_state_join_then_leave_all() -> None:
    join_case = PROTO["syncState_join"]
    state, joins, leaves = sync_state(join_case["state"], join_case["newState"])
    assert [key for key, _, _ in joins] == join_case["expected_onJoin_keys_in_order"]
    assert all(current is None for _, current, _ in joins)
    assert leaves == []
    first_ids = list_presences(state, lambda _key, pres: pres["metas"][0]["id"])
    assert first_ids == join_case["expected_list_first_meta_ids"]

    leave_case = PROTO["syncState_leave_all"]
    state, joins, leaves = sync_state(state, leave_case["newState"])
    assert joins == []
    assert [key for key, _, _ in leaves] == leave_case["expected_onLeave_keys_in_order"]
    assert all(current == {"metas": []} for _, current, _ in leaves)
    assert list_presences(state) == leave_case["expected_list"]


def test_proto_keys_sync_diff_steps() -> None:
    state: PresenceState = {}
    for step in PROTO["syncDiff"]["steps"]:
        state, _, _ = sync_diff(state, step["diff"])
        if "expected_list_key_and_first_id" in step:
            got = list_presences(state, lambda key, pres: [key, pres["metas"][0]["id"]])
            assert got == step["expected_list_key_and_first_id"]
        else:
            assert list_presences(state) == step["expected_list"]


def test_proto_keys_through_instance() -> None:
    presence = Presence()
    recorder = Recorder(presence)
    presence.handle("presence_state", PROTO["syncState_join"]["newState"], "1")
    keys = PROTO["syncState_join"]["expected_onJoin_keys_in_order"]
    assert [call.get("key") for call in recorder.take()] == [*keys, None]
    presence.handle("presence_state", {}, "1")
    assert [call.get("key") for call in recorder.take()] == [*keys, None]
    assert presence.state == {}


# --------------------------------------------------------------------------------------------
# instance_cases


_STEP_KEYS = {
    "event",
    "payload",
    "action",
    "note",
    "expected_list_first_meta",
    "expected_pendingDiffs",
    "expected_onJoins",
    "expected_onLeaves",
    "expected_inPendingSyncState",
}


@pytest.mark.parametrize("case", CASES["instance_cases"], ids=lambda case: case["test"])
def test_instance_case(case: dict[str, Any]) -> None:
    events = case.get("opts", {}).get("events", {})
    presence = Presence(
        state_event=events.get("state", "presence_state"),
        diff_event=events.get("diff", "presence_diff"),
    )
    joins: list[dict[str, Any]] = []
    leaves: list[dict[str, Any]] = []
    presence.on_join(
        lambda key, cur, new: joins.append({"id": key, "current": cur, "newPres": new})
    )
    presence.on_leave(
        lambda key, cur, left: leaves.append({"id": key, "current": cur, "leftPres": left})
    )
    channel_join_ref = case.get("channel_joinRef", "1")
    for step in case["steps"]:
        assert set(step) <= _STEP_KEYS, set(step) - _STEP_KEYS
        joins.clear()
        leaves.clear()
        if "action" in step:
            match = re.fullmatch(r"channel joinRef changes \('(\w+)' -> '(\w+)'\)", step["action"])
            assert match is not None
            assert match[1] == channel_join_ref
            channel_join_ref = match[2]
        else:
            update = presence.handle(step["event"], step["payload"], channel_join_ref)
            assert update is not None
            assert [j[0] for j in update.joins] == [j["id"] for j in joins]
            assert [lv[0] for lv in update.leaves] == [lv["id"] for lv in leaves]
        if "expected_list_first_meta" in step:
            assert _first_metas(presence) == step["expected_list_first_meta"]
        if "expected_pendingDiffs" in step:
            assert list(presence.pending_diffs) == step["expected_pendingDiffs"]
        if "expected_onJoins" in step:
            assert joins == step["expected_onJoins"]
        if "expected_onLeaves" in step:
            assert leaves == step["expected_onLeaves"]
        if "expected_inPendingSyncState" in step:
            expected = step["expected_inPendingSyncState"]
            assert presence.in_pending_sync_state(channel_join_ref) is expected


# --------------------------------------------------------------------------------------------
# Scenario 10 (section 4.6): a diff before the state is queued and applied after it


def test_scenario_10_diff_before_state() -> None:
    presence = Presence()
    recorder = Recorder(presence)
    u1, u2 = _pres("a"), _pres("b")

    update = presence.handle("presence_diff", {"joins": {"u2": u2}, "leaves": {}}, "1")
    assert update == PresenceUpdate((), (), synced=False)
    assert recorder.take() == []
    assert presence.state == {}
    assert list(presence.pending_diffs) == [{"joins": {"u2": u2}, "leaves": {}}]
    assert presence.in_pending_sync_state("1")

    update = presence.handle("presence_state", {"u1": u1}, "1")
    assert recorder.take() == [
        {"cb": "onJoin", "key": "u1", "current": None, "newPres": u1},
        {"cb": "onJoin", "key": "u2", "current": None, "newPres": u2},
        {"cb": "onSync", "list": [u1, u2]},
    ]
    assert update == PresenceUpdate((("u1", None, u1), ("u2", None, u2)), (), synced=True)
    assert presence.join_ref == "1"
    assert presence.pending_diffs == ()
    assert not presence.in_pending_sync_state("1")

    update = presence.handle("presence_diff", {"joins": {}, "leaves": {"u1": u1}}, "1")
    assert recorder.take() == [
        {"cb": "onLeave", "key": "u1", "current": {"metas": []}, "leftPres": u1},
        {"cb": "onSync", "list": [u2]},
    ]
    assert update == PresenceUpdate((), (("u1", {"metas": []}, u1),), synced=True)
    assert presence.state == {"u2": u2}


# --------------------------------------------------------------------------------------------
# Semantics details (section 4.2-4.5)


def test_joins_are_applied_before_leaves() -> None:
    # A leave listed "before" a join of the same ref in JSON order still runs after it.
    diff = {"leaves": {"u1": _pres("1")}, "joins": {"u1": _pres("1")}}
    state, joins, leaves = sync_diff({"u1": _pres("1")}, diff)
    assert state == {}
    assert joins == [("u1", _pres("1"), _pres("1"))]
    assert leaves == [("u1", {"metas": []}, _pres("1"))]


def test_join_keeps_old_metas_first_and_other_fields_from_the_join() -> None:
    state = {"u1": _pres("1", "2", user="old")}
    new = {"metas": [{"phx_ref": "3"}, {"phx_ref": "1", "v": 2}], "user": "new"}
    result, joins, _ = sync_diff(state, {"joins": {"u1": new}})
    assert result == {
        "u1": {"metas": [{"phx_ref": "2"}, {"phx_ref": "3"}, new["metas"][1]], "user": "new"}
    }
    assert joins == [("u1", state["u1"], new)]


def test_leave_of_absent_key_or_absent_ref() -> None:
    state = {"u1": _pres("1", "2")}
    result, joins, leaves = sync_diff(state, {"leaves": {"zz": _pres("1"), "u1": _pres("9")}})
    assert result == state
    assert joins == []
    # phoenix.js calls onLeave for a present key even when no meta matched.
    assert leaves == [("u1", _pres("1", "2"), _pres("9"))]


def test_leave_current_is_after_removal_and_key_remains() -> None:
    state = {"u1": _pres("1", "2", name="x")}
    result, _, leaves = sync_diff(state, {"joins": {}, "leaves": {"u1": _pres("1")}})
    assert leaves == [("u1", _pres("2", name="x"), _pres("1"))]
    assert result == {"u1": _pres("2", name="x")}
    assert leaves[0][1] is result["u1"]


def test_sync_state_join_and_leave_in_same_key() -> None:
    state = {"u1": _pres("1", "2", tag="old")}
    result, joins, leaves = sync_state(state, {"u1": _pres("2", "3", tag="new")})
    assert result == {"u1": _pres("2", "3", tag="new")}
    assert joins == [("u1", _pres("1", "2", tag="old"), _pres("3", tag="new"))]
    # The left presence is the current one (its other fields) with only the left metas.
    assert leaves == [("u1", _pres("2", "3", tag="new"), _pres("1", tag="old"))]


def test_sync_state_same_refs_in_other_order_is_no_change() -> None:
    state = {"u1": _pres("1", "2")}
    result, joins, leaves = sync_state(state, {"u1": _pres("2", "1")})
    assert (result, joins, leaves) == ({"u1": _pres("1", "2")}, [], [])


def test_sync_state_order_of_leaves_absent_keys_first() -> None:
    state = {"a": _pres("1"), "b": _pres("2"), "c": _pres("3")}
    _, joins, leaves = sync_state(state, {"b": _pres("9"), "d": _pres("4")})
    assert [key for key, _, _ in joins] == ["b", "d"]
    assert [key for key, _, _ in leaves] == ["a", "c", "b"]


def test_deleted_key_rejoins_at_the_end_replaced_key_keeps_its_place() -> None:
    state = {"a": _pres("1"), "b": _pres("2")}
    state, _, _ = sync_diff(state, {"joins": {"a": _pres("5")}})
    assert list(state) == ["a", "b"]
    state, _, _ = sync_diff(state, {"leaves": {"a": _pres("1", "5")}})
    state, _, _ = sync_diff(state, {"joins": {"a": _pres("6")}})
    assert list(state) == ["b", "a"]


# --------------------------------------------------------------------------------------------
# Isolation: no input mutated, no output sharing with a payload, states are snapshots


def test_sync_state_shares_nothing_with_its_inputs() -> None:
    old = {"u1": _pres("1"), "u2": _pres("2")}
    payload = {"u1": _pres("1"), "u3": {"metas": [{"phx_ref": "3", "d": {"x": [1]}}]}}
    old_copy, payload_copy = copy.deepcopy(old), copy.deepcopy(payload)
    state, joins, leaves = sync_state(old, payload)
    assert (old, payload) == (old_copy, payload_copy)
    payload["u3"]["metas"][0]["d"]["x"].append(2)
    old["u1"]["metas"].append({"phx_ref": "x"})
    assert state == {"u1": _pres("1"), "u3": payload_copy["u3"]}
    assert joins == [("u3", None, payload_copy["u3"])]
    assert leaves == [("u2", {"metas": []}, _pres("2"))]


def test_sync_diff_does_not_mutate_state_or_diff() -> None:
    old = {"u1": _pres("1", "2"), "u2": _pres("3")}
    diff = {"joins": {"u1": _pres("4")}, "leaves": {"u1": _pres("1"), "u2": _pres("3")}}
    old_copy, diff_copy = copy.deepcopy(old), copy.deepcopy(diff)
    state, _, _ = sync_diff(old, diff)
    assert (old, diff) == (old_copy, diff_copy)
    assert state == {"u1": _pres("2", "4")}
    diff["joins"]["u1"]["metas"][0]["phx_ref"] = "changed"
    assert state == {"u1": _pres("2", "4")}


def test_presence_state_is_a_snapshot() -> None:
    presence = Presence()
    presence.handle("presence_state", {"u1": _pres("1")}, "1")
    first = presence.state
    first_copy = copy.deepcopy(first)
    presence.handle("presence_diff", {"joins": {"u1": _pres("2")}, "leaves": {}}, "1")
    presence.handle("presence_diff", {"joins": {}, "leaves": {"u1": _pres("1")}}, "1")
    presence.handle("presence_state", {"u9": _pres("9")}, "1")
    assert first == first_copy
    assert presence.state == {"u9": _pres("9")}


def test_queued_diff_is_a_copy() -> None:
    presence = Presence()
    diff = {"joins": {"u1": _pres("1")}, "leaves": {}}
    presence.handle("presence_diff", diff, "1")
    diff["joins"]["u1"]["metas"].clear()
    presence.handle("presence_state", {}, "1")
    assert presence.state == {"u1": _pres("1")}


# --------------------------------------------------------------------------------------------
# Malformed server data: never raises, skips exactly the bad part


@pytest.mark.parametrize("payload", [None, [], "x", 1, 1.5, True, [["u1", _pres("1")]]])
def test_non_dict_state_payload_is_ignored(payload: Any) -> None:
    presence = Presence()
    presence.handle("presence_diff", {"joins": {"u2": _pres("2")}}, "1")
    recorder = Recorder(presence)
    assert presence.handle("presence_state", payload, "1") == PresenceUpdate((), (), False)
    assert recorder.take() == []
    assert presence.join_ref is None
    assert presence.state == {}
    assert len(presence.pending_diffs) == 1
    state, joins, leaves = sync_state({"u1": _pres("1")}, payload)
    assert (state, joins, leaves) == ({"u1": _pres("1")}, [], [])


@pytest.mark.parametrize("payload", [None, [], "x", 1, [{"joins": {}}]])
def test_non_dict_diff_payload_is_ignored(payload: Any) -> None:
    for join_ref in ("1", "2"):  # applied and pending paths
        presence = Presence()
        presence.handle("presence_state", {"u1": _pres("1")}, "1")
        recorder = Recorder(presence)
        assert presence.handle("presence_diff", payload, join_ref) == PresenceUpdate((), (), False)
        assert recorder.take() == []
        assert presence.pending_diffs == ()
        assert presence.state == {"u1": _pres("1")}
    state, joins, leaves = sync_diff({"u1": _pres("1")}, payload)
    assert (state, joins, leaves) == ({"u1": _pres("1")}, [], [])


@pytest.mark.parametrize(
    "diff",
    [{}, {"joins": None, "leaves": None}, {"joins": [1], "leaves": "u1"}, {"other": 1}],
)
def test_diff_missing_or_bad_joins_and_leaves_count_as_empty(diff: dict[str, Any]) -> None:
    presence = Presence()
    presence.handle("presence_state", {"u1": _pres("1")}, "1")
    recorder = Recorder(presence)
    assert presence.handle("presence_diff", diff, "1") == PresenceUpdate((), (), True)
    assert recorder.take() == [{"cb": "onSync", "list": [_pres("1")]}]


BAD_PRESENCES: list[Any] = [
    None,
    1,
    "x",
    [{"phx_ref": "1"}],
    {},
    {"metas": None},
    {"metas": {"phx_ref": "1"}},
    {"metas": "1"},
    {"metas": []},
    {"metas": [None, 1, "1", [], {}, {"phx_ref": None}, {"phx_ref": 1}, {"ref": "1"}]},
]


@pytest.mark.parametrize("bad", BAD_PRESENCES)
def test_bad_presence_in_state_counts_as_absent(bad: Any) -> None:
    old = {"u1": _pres("1"), "u2": _pres("2")}
    state, joins, leaves = sync_state(old, {"u1": bad, "u2": _pres("2"), "u3": bad})
    assert state == {"u2": _pres("2")}
    assert joins == []
    assert leaves == [("u1", {"metas": []}, _pres("1"))]


@pytest.mark.parametrize("bad", BAD_PRESENCES)
def test_bad_presence_in_diff_is_skipped(bad: Any) -> None:
    old = {"u1": _pres("1"), "u2": _pres("2")}
    diff = {"joins": {"u1": bad, "u3": bad}, "leaves": {"u2": bad, "u1": bad}}
    assert sync_diff(old, diff) == (old, [], [])


def test_bad_metas_are_dropped_and_good_ones_kept() -> None:
    metas = [{"phx_ref": "1"}, None, {"id": 2}, {"phx_ref": 3}, "x", {"phx_ref": "4", "a": 1}]
    good = {"metas": [{"phx_ref": "1"}, {"phx_ref": "4", "a": 1}], "extra": [1]}
    state, joins, _ = sync_state({}, {"u1": {"metas": metas, "extra": [1]}})
    assert state == {"u1": good}
    assert joins == [("u1", None, good)]
    _, _, leaves = sync_diff(state, {"leaves": {"u1": {"metas": [{"id": 1}, {"phx_ref": "4"}]}}})
    assert leaves == [("u1", _pres("1", extra=[1]), _pres("4"))]


def _nested(levels: int, *, in_dicts: bool = False) -> Any:
    value: Any = "bottom"
    for _ in range(levels):
        value = {"k": value} if in_dicts else [value]
    return value


def test_depth_limit_accepts_100_levels_and_skips_more() -> None:
    # presence = level 1, its fields and metas list = 2, a meta = 3: 97 nested lists in a meta
    # and 99 nested dicts in a field reach level 100.
    ok = {"metas": [{"phx_ref": "1", "deep": _nested(97)}]}
    too_deep = {"metas": [{"phx_ref": "2", "deep": _nested(98)}]}
    too_deep_field = {"metas": [{"phx_ref": "3"}], "deep": _nested(100, in_dicts=True)}
    ok_field = {"metas": [{"phx_ref": "4"}], "deep": _nested(99, in_dicts=True)}
    payload = {"ok": ok, "bad": too_deep, "bad2": too_deep_field, "ok2": ok_field}
    state, joins, _ = sync_state({}, payload)
    assert state == {"ok": ok, "ok2": ok_field}
    assert [key for key, _, _ in joins] == ["ok", "ok2"]
    # A state made of accepted presences can always be cloned again.
    assert sync_state(state, state) == (state, [], [])
    assert sync_state(state, 0) == (state, [], [])


def test_hostile_nesting_never_raises() -> None:
    hostile = {"metas": [{"phx_ref": "1", "deep": _nested(50_000)}]}
    presence = Presence()
    assert presence.handle("presence_state", {"u1": hostile}, "1") == PresenceUpdate((), (), True)
    assert presence.handle("presence_diff", {"joins": {"u1": hostile}}, "1") == PresenceUpdate(
        (), (), True
    )
    assert presence.state == {}


# --------------------------------------------------------------------------------------------
# The Presence instance


def test_handle_ignores_other_events() -> None:
    presence = Presence()
    recorder = Recorder(presence)
    assert presence.handle("new_msg", {"u1": _pres("1")}, "1") is None
    assert presence.handle("phx_reply", {}, "1") is None
    assert recorder.take() == []
    assert presence.state == {}


def test_custom_event_names_replace_defaults() -> None:
    presence = Presence(state_event="s", diff_event="d")
    assert (presence.state_event, presence.diff_event) == ("s", "d")
    assert presence.handle("presence_state", {"u1": _pres("1")}, "1") is None
    assert presence.handle("s", {"u1": _pres("1")}, "1") == PresenceUpdate(
        (("u1", None, _pres("1")),), (), True
    )


def test_in_pending_sync_state() -> None:
    assert Presence().join_ref is None
    presence = Presence()
    assert presence.in_pending_sync_state(None)
    assert presence.in_pending_sync_state("1")
    presence.handle("presence_state", {}, "1")
    assert not presence.in_pending_sync_state("1")
    assert presence.in_pending_sync_state("2")
    assert presence.in_pending_sync_state(None)
    presence.handle("presence_state", {}, "")  # phoenix.js `!joinRef`: an empty ref is no ref
    assert presence.join_ref == ""
    assert presence.in_pending_sync_state("")


def test_state_with_null_channel_join_ref_keeps_diffs_queued() -> None:
    presence = Presence()
    presence.handle("presence_state", {"u1": _pres("1")}, None)
    update = presence.handle("presence_diff", {"joins": {"u2": _pres("2")}}, None)
    assert update == PresenceUpdate((), (), False)
    assert len(presence.pending_diffs) == 1


def test_rejoin_syncs_what_changed_while_away_then_queued_diffs() -> None:
    presence = Presence()
    presence.handle("presence_state", {"u1": _pres("1"), "u2": _pres("2")}, "1")
    recorder = Recorder(presence)
    presence.handle("presence_diff", {"joins": {"u4": _pres("4")}, "leaves": {}}, "5")
    presence.handle("presence_diff", {"joins": {}, "leaves": {"u3": _pres("3")}}, "5")
    assert recorder.take() == []
    update = presence.handle("presence_state", {"u2": _pres("2"), "u3": _pres("3")}, "5")
    assert recorder.take() == [
        {"cb": "onJoin", "key": "u3", "current": None, "newPres": _pres("3")},
        {"cb": "onLeave", "key": "u1", "current": {"metas": []}, "leftPres": _pres("1")},
        {"cb": "onJoin", "key": "u4", "current": None, "newPres": _pres("4")},
        {"cb": "onLeave", "key": "u3", "current": {"metas": []}, "leftPres": _pres("3")},
        {"cb": "onSync", "list": [_pres("2"), _pres("4")]},
    ]
    assert update == PresenceUpdate(
        (("u3", None, _pres("3")), ("u4", None, _pres("4"))),
        (("u1", {"metas": []}, _pres("1")), ("u3", {"metas": []}, _pres("3"))),
        True,
    )
    assert presence.join_ref == "5"
    assert presence.pending_diffs == ()


def test_callbacks_are_replaced_not_added() -> None:
    presence = Presence()
    first: list[str] = []
    second: list[str] = []
    presence.on_join(lambda key, _c, _n: first.append(key))
    presence.on_join(lambda key, _c, _n: second.append(key))
    presence.on_sync(lambda: first.append("sync"))
    presence.on_sync(None)
    presence.handle("presence_state", {"u1": _pres("1")}, "1")
    assert (first, second) == ([], ["u1"])


def test_callbacks_are_read_once_per_event() -> None:
    presence = Presence()
    calls: list[str] = []

    def first_join(key: str, _cur: object, _new: object) -> None:
        calls.append(f"first {key}")
        presence.on_join(lambda k, _c, _n: calls.append(f"second {k}"))

    presence.on_join(first_join)
    presence.handle("presence_state", {"u1": _pres("1"), "u2": _pres("2")}, "1")
    presence.handle("presence_diff", {"joins": {"u3": _pres("3")}}, "1")
    assert calls == ["first u1", "first u2", "second u3"]


def test_callbacks_see_the_state_after_the_whole_event() -> None:
    presence = Presence()
    presence.handle("presence_diff", {"joins": {"u2": _pres("2")}}, "1")
    seen: list[list[str]] = []
    presence.on_join(lambda _k, _c, _n: seen.append(list(presence.state)))
    presence.handle("presence_state", {"u1": _pres("1")}, "1")
    assert seen == [["u1", "u2"], ["u1", "u2"]]


def test_raising_callback_leaves_the_tracker_consistent() -> None:
    presence = Presence()
    presence.handle("presence_diff", {"joins": {"u2": _pres("2")}}, "1")
    synced: list[bool] = []

    def boom(_key: str, _cur: object, _new: object) -> None:
        raise RuntimeError("user bug")

    presence.on_join(boom)
    presence.on_sync(lambda: synced.append(True))
    with pytest.raises(RuntimeError, match="user bug"):
        presence.handle("presence_state", {"u1": _pres("1")}, "1")
    assert presence.state == {"u1": _pres("1"), "u2": _pres("2")}
    assert presence.join_ref == "1"
    assert presence.pending_diffs == ()
    assert synced == []


def test_list_method() -> None:
    presence = Presence()
    presence.handle("presence_state", {"b": _pres("1", "2"), "a": _pres("3")}, "1")
    assert presence.list() == [_pres("1", "2"), _pres("3")]
    assert presence.list(lambda key, pres: (key, len(pres["metas"]))) == [("b", 2), ("a", 1)]


def test_reset_forgets_state_but_keeps_callbacks_and_events() -> None:
    presence = Presence(state_event="s", diff_event="d")
    recorder = Recorder(presence)
    presence.handle("s", {"u1": _pres("1")}, "1")
    presence.handle("d", {"joins": {"u2": _pres("2")}}, "2")
    presence.reset()
    assert presence.state == {}
    assert presence.join_ref is None
    assert presence.pending_diffs == ()
    recorder.take()
    presence.handle("s", {"u1": _pres("1")}, "3")
    assert recorder.take() == [
        {"cb": "onJoin", "key": "u1", "current": None, "newPres": _pres("1")},
        {"cb": "onSync", "list": [_pres("1")]},
    ]


def test_presence_update_is_frozen() -> None:
    update = PresenceUpdate((), (), synced=True)
    with pytest.raises(AttributeError):
        update.synced = False  # type: ignore[misc]


# --------------------------------------------------------------------------------------------
# Properties

REFS = st.sampled_from(["a", "b", "c", "d", "e"])
KEYS = st.sampled_from(["u1", "u2", "u3", "__proto__", "constructor", "7"])
META = st.fixed_dictionaries({"phx_ref": REFS}, optional={"x": st.integers(0, 3)})
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=3),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=6,
)
GOOD_PRESENCE = st.builds(lambda metas: {"metas": metas}, st.lists(META, max_size=3))
PRESENCE = st.one_of(
    GOOD_PRESENCE,
    GOOD_PRESENCE,
    GOOD_PRESENCE,
    JSON,
    st.builds(lambda metas: {"metas": metas}, st.lists(META | JSON, max_size=3)),
)
PRESENCE_MAP = st.dictionaries(KEYS, PRESENCE, max_size=4)
DIFF = st.one_of(
    st.fixed_dictionaries({"joins": PRESENCE_MAP, "leaves": PRESENCE_MAP}),
    st.fixed_dictionaries({}, optional={"joins": PRESENCE_MAP | JSON, "leaves": PRESENCE_MAP}),
    JSON,
)


def _ref_sets(state: PresenceState) -> dict[str, set[str]]:
    return {key: {meta["phx_ref"] for meta in pres["metas"]} for key, pres in state.items()}


@settings(max_examples=150, deadline=None)
@given(initial=PRESENCE_MAP | JSON, diffs=st.lists(DIFF, max_size=8))
def test_diffs_then_resync_is_a_no_op(initial: Any, diffs: list[Any]) -> None:
    inputs = copy.deepcopy((initial, diffs))
    state, _, _ = sync_state({}, initial)
    snapshots = [(state, copy.deepcopy(state))]
    _no_empty_metas(state)
    for diff in diffs:
        state, joins, leaves = sync_diff(state, diff)
        _no_empty_metas(state)
        for key, current, _left in leaves:
            assert (key in state) == bool(current["metas"])
        for key, _current, joined in joins:
            assert {m["phx_ref"] for m in joined["metas"]} <= _ref_sets(state).get(key, set()) | {
                m["phx_ref"] for lk, _, lp in leaves if lk == key for m in lp["metas"]
            }
        snapshots.append((state, copy.deepcopy(state)))
    assert (initial, diffs) == inputs
    assert all(snap == saved for snap, saved in snapshots)

    assert sync_state(state, state) == (state, [], [])
    resynced, _, _ = sync_state(snapshots[0][0], state)
    _no_empty_metas(resynced)
    assert _ref_sets(resynced) == _ref_sets(state)
    assert sync_state(resynced, state)[1:] == ([], [])


@settings(max_examples=150, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from(["presence_state", "presence_diff", "other"]),
            PRESENCE_MAP | DIFF,
            st.sampled_from([None, "1", "2"]),
        ),
        max_size=10,
    )
)
def test_presence_never_raises_and_matches_the_functions(steps: list[Any]) -> None:
    presence = Presence()
    calls: list[tuple[str, str]] = []
    presence.on_join(lambda key, _c, _n: calls.append(("join", key)))
    presence.on_leave(lambda key, _c, _l: calls.append(("leave", key)))
    presence.on_sync(lambda: calls.append(("sync", "")))
    for event, payload, join_ref in steps:
        calls.clear()
        before, queued = presence.state, presence.pending_diffs
        pending = presence.in_pending_sync_state(join_ref)
        update = presence.handle(event, payload, join_ref)
        _no_empty_metas(presence.state)
        if event == "other":
            assert update is None
            assert calls == []
            continue
        if not isinstance(payload, dict):
            assert update == PresenceUpdate((), (), False)
            assert (presence.state, presence.pending_diffs) == (before, queued)
            assert calls == []
            continue
        if event == "presence_diff" and pending:
            assert update == PresenceUpdate((), (), False)
            assert presence.state is before
            assert len(presence.pending_diffs) == len(queued) + 1
            assert calls == []
            continue
        # Applied: the same as the pure functions, callbacks stage by stage, then onSync.
        if event == "presence_state":
            state, joins, leaves = sync_state(before, payload)
            diffs: tuple[Any, ...] = queued
        else:
            state, joins, leaves = before, [], []
            diffs = (payload,)
        expected_calls = [("join", k) for k, _, _ in joins] + [("leave", k) for k, _, _ in leaves]
        for diff in diffs:
            state, step_joins, step_leaves = sync_diff(state, diff)
            joins += step_joins
            leaves += step_leaves
            expected_calls += [("join", k) for k, _, _ in step_joins]
            expected_calls += [("leave", k) for k, _, _ in step_leaves]
        assert presence.state == state
        assert update == PresenceUpdate(tuple(joins), tuple(leaves), True)
        assert calls == [*expected_calls, ("sync", "")]
        # A state clears the queue; an applied diff leaves it as it was.
        assert presence.pending_diffs == (() if event == "presence_state" else queued)
        if event == "presence_state":
            assert presence.join_ref == join_ref


def test_pending_diffs_are_bounded_and_drops_counted() -> None:
    presence = Presence(max_pending_diffs=2)
    diffs = [{"joins": {f"u{i}": {"metas": [{"phx_ref": str(i)}]}}, "leaves": {}} for i in range(3)]
    for diff in diffs:
        assert presence.handle("presence_diff", diff, "1") == PresenceUpdate((), (), False)
    assert presence.dropped_diffs == 1
    assert [list(d["joins"]) for d in presence.pending_diffs] == [["u1"], ["u2"]]
    presence.handle("presence_state", {}, "1")
    assert list(presence.state) == ["u1", "u2"]
