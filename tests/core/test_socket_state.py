"""The connection's transition table, checked pair by pair through the client."""

from __future__ import annotations

import pytest

from stx_proto._client import Client
from stx_proto._errors import UsageError
from stx_proto._socket_state import SOCKET_TRANSITIONS, SocketInput, SocketState


@pytest.mark.parametrize("state", list(SocketState))
@pytest.mark.parametrize("event", list(SocketInput))
def test_socket_transition_every_pair(state: SocketState, event: SocketInput) -> None:
    client = Client("ws://h/socket")
    client._state = state
    expected = SOCKET_TRANSITIONS.get((state, event))
    if expected is None:
        with pytest.raises(UsageError, match=f"socket: {event.value} in state {state.value}"):
            client._socket(event)
        assert client.state is state
    else:
        client._socket(event)
        assert client.state is expected
    # Nothing ever leaves CLOSED.
    assert not any(s is SocketState.CLOSED for s, _ in SOCKET_TRANSITIONS)
