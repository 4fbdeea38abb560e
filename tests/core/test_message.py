"""Unit tests of the channel message value and its reply helpers."""

from __future__ import annotations

from stx_proto._message import PHX_ERROR, PHX_REPLY, ChannelMessage


def test_channel_message_properties() -> None:
    push = ChannelMessage("market_info:42", "update", {"p": 1}, None, "3")
    assert push.channel == "market_info"
    assert not push.is_reply
    assert push.reply_status is None
    assert push.response is None
    assert not push.is_error
    assert ChannelMessage("plain", "e", {}).channel == "plain"

    ok = ChannelMessage("t", PHX_REPLY, {"status": "ok", "response": {"r": 1}}, "5", "3")
    assert ok.is_reply
    assert ok.reply_status == "ok"
    assert ok.response == {"r": 1}
    assert not ok.is_error

    err = ChannelMessage("t", PHX_REPLY, {"status": "error", "response": {"reason": "x"}}, "6")
    assert err.is_error
    assert err.reply_status == "error"

    crash = ChannelMessage("t", PHX_ERROR, {}, "3", "3")
    assert crash.is_error
    assert crash.reply_status is None

    # Replies with odd payloads (binary response, non-str status) do not raise.
    assert ChannelMessage("t", PHX_REPLY, b"raw").reply_status is None
    assert ChannelMessage("t", PHX_REPLY, b"raw").response is None
    assert ChannelMessage("t", PHX_REPLY, {"status": 1}).reply_status is None
    assert ChannelMessage("t", PHX_REPLY, {"status": "ok"}).response is None
