"""The ``stx-ws`` command: listen to topics, push once, or watch the demo.

Messages go to stdout, one JSON object per line; status lines (connected, reconnecting,
rejoined) go to stderr, so ``stx-ws listen ... | jq`` sees only data.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

import anyio

from stx_anyio import Socket
from stx_proto import ChannelMessage, Disconnected, StxWsError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def message_json(msg: ChannelMessage) -> str:
    """One message as a JSON line; a binary payload becomes ``{"binary": <base64>}``."""
    return json.dumps(
        {
            "topic": msg.topic,
            "event": msg.event,
            "payload": _jsonable(msg.payload),
            "ref": msg.ref,
            "join_ref": msg.join_ref,
        },
        ensure_ascii=False,
        separators=(",", ":"),
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"binary": base64.b64encode(value).decode()}
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def _key_values(pairs: Sequence[str], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"stx-ws: {what} must look like key=value, got {pair!r}")
        out[key] = value
    return out


def _json_arg(text: str | None, what: str) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise SystemExit(f"stx-ws: {what} is not valid JSON: {exc}") from None


class _Status:
    """Status lines for stderr."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def __call__(self, text: str) -> None:
        print(f"[stx-ws] {text}", file=self.out, flush=True)


def _socket_from(args: argparse.Namespace, status: _Status) -> Socket:
    def on_close(event: Disconnected) -> None:
        status(f"disconnected: {event.describe(anyio.current_time())}")

    def on_rejoin(channel: Any) -> None:
        status(f"rejoined {channel.topic} (messages may have been missed)")

    return Socket(
        args.url,
        params=_key_values(args.param, "--param") or None,
        auth_token=args.token,
        headers=_key_values(args.header, "--header") or None,
        vsn=args.vsn,
        timeout=args.timeout,
        on_open=lambda: status("connected"),
        on_close=on_close,
        on_rejoin=on_rejoin,
    )


async def listen(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Join every topic and print each message until interrupted or the socket gives up."""
    status = _Status(err)
    payload = _json_arg(args.payload, "--payload")

    def show(msg: ChannelMessage) -> None:
        print(message_json(msg), file=out, flush=True)

    async with _socket_from(args, status) as sock:
        for topic in args.topics:
            await sock.join(topic, payload, on_message=show)
            status(f"joined {topic}")
        await sock.wait_closed()
    return EXIT_OK


async def push(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Join, push one event, print the reply's response as JSON."""
    status = _Status(err)
    payload = _json_arg(args.payload, "PAYLOAD")
    async with _socket_from(args, status) as sock:
        channel = await sock.join(args.topic, _json_arg(args.join_payload, "--join-payload"))
        response = await channel.push(args.event, payload)
        print(json.dumps(_jsonable(response), ensure_ascii=False), file=out, flush=True)
    return EXIT_OK


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stx-ws", description="Phoenix Channels over WebSocket, from the command line."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def connection_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("url", help="socket URL, e.g. wss://host/socket")
        p.add_argument(
            "--param",
            action="append",
            default=[],
            metavar="K=V",
            help="query parameter (repeatable)",
        )
        p.add_argument(
            "--header",
            action="append",
            default=[],
            metavar="K=V",
            help="handshake header (repeatable)",
        )
        p.add_argument("--token", help="auth token, sent in the Phoenix subprotocol")
        p.add_argument("--vsn", default="2.0.0", choices=["2.0.0", "1.0.0"])
        p.add_argument("--timeout", type=float, default=10.0, help="join/push timeout (s)")

    p_listen = sub.add_parser("listen", help="join topics and print every message as JSON")
    connection_options(p_listen)
    p_listen.add_argument("topics", nargs="+", metavar="TOPIC")
    p_listen.add_argument("--payload", help="join payload (JSON)")

    p_push = sub.add_parser("push", help="join a topic, push one event, print the reply")
    connection_options(p_push)
    p_push.add_argument("topic")
    p_push.add_argument("event")
    p_push.add_argument("payload", nargs="?", help="push payload (JSON)")
    p_push.add_argument("--join-payload", help="join payload (JSON)")

    p_demo = sub.add_parser("demo", help="a local server, a live feed, a cut and a resubscribe")
    p_demo.add_argument("--updates", type=int, default=6, help="updates to show per phase")
    return parser


def main(
    argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Entry point of the ``stx-ws`` command; returns the exit status."""
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    args = _parser().parse_args(argv)
    try:
        if args.command == "listen":
            return anyio.run(listen, args, out, err)
        if args.command == "push":
            return anyio.run(push, args, out, err)
        from ._demo import demo  # noqa: PLC0415 - only the demo needs the test server

        return anyio.run(demo, args.updates, out)
    except KeyboardInterrupt:
        return EXIT_OK
    except StxWsError as exc:
        print(f"stx-ws: {exc}", file=err)
        return EXIT_FAILED


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
