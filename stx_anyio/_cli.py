"""The ``stx-ws`` command: listen to topics, push once, watch the demo, or serve a test feed.

Messages go to stdout, one JSON object per line; status lines (connected, reconnecting,
rejoined), the log and errors go to stderr, so ``stx-ws listen ... | jq`` sees only data. When
the reader of stdout goes away (``stx-ws listen ... | head -1``), the command stops quietly with
status 0. Every failure is one line on stderr that says what failed; no token, header value or
query parameter is ever printed.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import functools
import json
import logging
import math
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from importlib import metadata
from typing import Any, TextIO
from urllib.parse import urlsplit

import anyio

from stx_anyio import (
    Channel,
    ChannelMessage,
    Disconnected,
    HandshakeRefusedError,
    RetryPolicy,
    Socket,
    STXWebSocket,
    StxWsError,
    UsageError,
)
from stx_proto import stx_host

from ._demo import demo
from ._serve import DEFAULT_INTERVAL, DEFAULT_PORT, DEFAULT_TOPICS, serve

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

EXIT_STATUS_HELP = """\
exit status:
  0  done: finished, interrupted with Ctrl-C, or the reader of the output went away
  1  failed: a connection, join or push failed, or reconnecting gave up
  2  usage error: a bad option or argument
"""

_BAD_CREDENTIALS = (
    "HTTP 401/403 usually means bad or missing credentials: check --token, --header, --param,"
    " or the STX credentials of --stx"
)

#: What a refused handshake usually means, by HTTP status.
HANDSHAKE_HINTS = {
    401: _BAD_CREDENTIALS,
    403: _BAD_CREDENTIALS,
    404: "HTTP 404 usually means a wrong path: the URL should end in /socket",
}

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_DEFAULT_RETRY = RetryPolicy()
MIN_FEED_INTERVAL = 0.01


# ------------------------------------------------------------------------------------------------
# Output


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


def silence(stream: TextIO) -> None:
    """Point the file descriptor under ``stream`` at the null device, so that what is still
    buffered (flushed at interpreter exit) goes nowhere instead of raising BrokenPipeError
    again. Does nothing for a stream with no file descriptor (a StringIO). Never raises."""
    try:
        fd = stream.fileno()
    except (OSError, ValueError):  # io.UnsupportedOperation is both
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


class LineOutput:
    """Lines to stdout that stop quietly once the reader has gone (``| head -1``).

    The first write that meets a closed pipe silences the stream (see :func:`silence`), marks
    the output :attr:`gone` and calls :attr:`on_gone` (the command uses it to stop).
    """

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.gone = False
        self.on_gone: Callable[[], object] | None = None

    def write(self, line: str) -> bool:
        """Write ``line`` and a newline, flushed. Returns False, writing nothing, once the
        reader has gone."""
        if self.gone:
            return False
        try:
            self.stream.write(line + "\n")
            self.stream.flush()
        except BrokenPipeError:
            self.gone = True
            silence(self.stream)
            if self.on_gone is not None:
                self.on_gone()
            return False
        return True


class _Status:
    """Status lines for stderr (``[stx-ws] ...``); a closed stderr is ignored."""

    def __init__(self, err: TextIO) -> None:
        self.err = err

    def __call__(self, text: str) -> None:
        _error(self.err, f"[stx-ws] {text}")


def _error(err: TextIO, line: str) -> None:
    """Print ``line`` to ``err`` (stderr), flushed; a closed stderr is ignored."""
    with contextlib.suppress(BrokenPipeError, ValueError):
        print(line, file=err, flush=True)


def failure_line(exc: BaseException) -> str:
    """The one line the command prints for a failure: ``stx-ws: <what failed>``, with a hint
    when the cause is a refused handshake whose status has a usual meaning (401, 403, 404)."""
    text = f"stx-ws: {exc}"
    refused = _refusal(exc)
    hint = HANDSHAKE_HINTS.get(refused.status_code) if refused is not None else None
    return f"{text} ({hint})" if hint else text


def _refusal(exc: BaseException) -> HandshakeRefusedError | None:
    """The HandshakeRefusedError in ``exc``'s chain of causes, if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, HandshakeRefusedError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


# ------------------------------------------------------------------------------------------------
# Logging

# The library's warnings about what the command reports itself, in its status lines and its
# final error line: each is said once, by the command.
#: The library's log records that the command says itself (tagged by the driver kit).
_REPORTED = frozenset({"connect_failed", "gave_up"})


class _NotReported(logging.Filter):
    """Drops the library's WARNING records about a refused handshake, a failed connect or
    giving up: the command's status lines and final error line say these once."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.levelno == logging.WARNING and getattr(record, "stx_ws_event", None) in _REPORTED
        )


@contextlib.contextmanager
def logging_to(err: TextIO, level: str) -> Iterator[logging.Handler]:
    """Send log records of ``level`` and above to ``err`` for the duration of the block, and
    yield the handler; the root logger is restored afterwards."""
    handler = logging.StreamHandler(err)
    handler.setFormatter(logging.Formatter("[stx-ws] %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_NotReported())
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(level)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


# ------------------------------------------------------------------------------------------------
# Values of options: each refuses a bad value at once (argparse exits with status 2), and none
# echoes a value that may be secret.


def positive_int(text: str) -> int:
    """A whole number of at least 1. Raises ArgumentTypeError otherwise."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a whole number of at least 1, got {text!r}"
        ) from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {value}")
    return value


def seconds(text: str) -> float:
    """A finite number of seconds above 0. Raises ArgumentTypeError otherwise."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number of seconds above 0, got {text!r}"
        ) from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds above 0, got {text!r}")
    return value


def feed_interval(text: str) -> float:
    """Seconds between feed updates: at least MIN_FEED_INTERVAL. Raises ArgumentTypeError."""
    value = seconds(text)
    if value < MIN_FEED_INTERVAL:
        raise argparse.ArgumentTypeError(
            f"expected at least {MIN_FEED_INTERVAL} s between updates, got {text!r}"
        )
    return value


def port(text: str) -> int:
    """A TCP port, 0 to 65535 (0: any free port). Raises ArgumentTypeError otherwise."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port from 0 to 65535, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 0 to 65535, got {value}")
    return value


def ws_url(text: str) -> str:
    """A ``ws://``, ``wss://`` (or ``http(s)://``) URL with a host. Raises ArgumentTypeError,
    without repeating the URL (its query may hold a token)."""
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise argparse.ArgumentTypeError("not a valid URL (a bad port?)") from None
    if parts.scheme.lower() not in ("ws", "wss", "http", "https"):
        raise argparse.ArgumentTypeError("the URL must start with ws:// or wss://")
    if not parts.hostname:
        raise argparse.ArgumentTypeError("the URL has no host")
    return text


def stx_region_env(text: str) -> tuple[str, str]:
    """``REGION/ENV`` of STX's host table (e.g. ``ontario/staging``, ``eu/prod``) as a pair.
    Raises ArgumentTypeError for another shape or a pair with no host, naming the known ones."""
    region, sep, env = text.partition("/")
    if not sep or not region.strip() or not env.strip():
        raise argparse.ArgumentTypeError(f"expected REGION/ENV, e.g. ontario/staging, got {text!r}")
    try:
        stx_host(region, env)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return region.strip(), env.strip()


def key_value(text: str) -> tuple[str, str]:
    """``NAME=VALUE`` as a pair. Raises ArgumentTypeError, without repeating the text (it may
    be a secret)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError("expected NAME=VALUE")
    return key, value


def json_value(text: str) -> Any:
    """Parsed JSON. Raises ArgumentTypeError if it is not valid JSON."""
    try:
        return json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from None


def topic(text: str) -> str:
    """A topic name: not empty. Raises ArgumentTypeError otherwise."""
    if not text.strip():
        raise argparse.ArgumentTypeError("a topic cannot be empty")
    return text


def log_level(text: str) -> str:
    """One of LOG_LEVELS, in any case. Raises ArgumentTypeError otherwise."""
    level = text.upper()
    if level not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(LOG_LEVELS)}, got {text!r}")
    return level


# ------------------------------------------------------------------------------------------------
# The parser: one function per group of options, one per command


def _version() -> str:
    try:
        return metadata.version("stx-ws")
    except metadata.PackageNotFoundError:  # pragma: no cover - run from a source tree
        return "unknown (not installed)"


def _log_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--log-level",
        type=log_level,
        default="WARNING",
        metavar="LEVEL",
        help=f"log to stderr at this level: {', '.join(LOG_LEVELS)} (default: WARNING)",
    )


def _connection_options(p: argparse.ArgumentParser, stx: bool) -> None:
    if not stx:  # with --stx, the host table (or the environment) gives the URL
        p.add_argument(
            "url",
            type=ws_url,
            metavar="URL",
            help="socket URL, e.g. ws://127.0.0.1:4000/socket (or --stx instead)",
        )
    g = p.add_argument_group("connection")
    g.add_argument(
        "--stx",
        type=stx_region_env,
        metavar="REGION/ENV",
        help="connect to STX instead of a URL, e.g. --stx ontario/staging; the credentials come "
        "from the environment (STX_KEY_ID and STX_PRIVATE_KEY, or STX_TOKEN) or a "
        "~/.stx/credentials profile, and STX_WS_URL or STX_HOST override the host",
    )
    g.add_argument(
        "--profile",
        metavar="NAME",
        help="with --stx: the ~/.stx/credentials profile to read (default: STX_PROFILE, "
        "else 'default')",
    )
    g.add_argument(
        "--param",
        type=key_value,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="query parameter of the connection, e.g. token=... (repeatable; never printed)",
    )
    g.add_argument(
        "--header",
        type=key_value,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="header of the WebSocket handshake (repeatable; values never printed)",
    )
    g.add_argument(
        "--token",
        help="auth token, sent in the Sec-WebSocket-Protocol header as phoenix.js's authToken "
        "(never printed)",
    )
    g.add_argument(
        "--vsn",
        default="2.0.0",
        choices=["2.0.0", "1.0.0"],
        help="Phoenix serializer version: 2.0.0 (array frames, as phoenix.js; default) "
        "or 1.0.0 (object frames, older servers)",
    )
    g.add_argument(
        "--timeout",
        type=seconds,
        default=10.0,
        metavar="S",
        help="seconds to wait for a join or push reply, and for a connect (default: 10)",
    )


def _retry_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "reconnecting",
        "A lost connection is reopened with exponential backoff and jitter, and every\n"
        "channel rejoined. A handshake refused with HTTP 4xx (except 408 and 429)\n"
        "is not retried: the command ends and says why.",
    )
    g.add_argument(
        "--retry-attempts",
        type=positive_int,
        metavar="N",
        help="give up after N failed retries in a row (default: retry forever)",
    )
    g.add_argument(
        "--retry-initial-backoff",
        type=seconds,
        metavar="S",
        help=f"seconds before the first retry, doubled after each failure "
        f"(default: {_DEFAULT_RETRY.initial_backoff:g})",
    )
    g.add_argument(
        "--retry-max-backoff",
        type=seconds,
        metavar="S",
        help=f"the longest wait between two attempts (default: {_DEFAULT_RETRY.max_backoff:g})",
    )
    g.add_argument(
        "--no-reconnect",
        action="store_true",
        help="never reconnect: a lost or failed connection ends the command (status 1)",
    )


def _listen_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "topics",
        nargs="+",
        type=topic,
        metavar="TOPIC",
        help="topic to join, e.g. market_info or room:lobby (one or more)",
    )
    p.add_argument("--payload", type=json_value, help="join payload, as JSON (default: {})")
    _retry_options(p)


def _push_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("topic", type=topic, metavar="TOPIC", help="topic to join, e.g. room:lobby")
    p.add_argument("event", metavar="EVENT", help="event name of the push, e.g. new_msg")
    p.add_argument(
        "payload", nargs="?", type=json_value, metavar="PAYLOAD", help="push payload, as JSON"
    )
    p.add_argument("--join-payload", type=json_value, help="join payload, as JSON (default: {})")
    _retry_options(p)


def _demo_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--updates",
        type=positive_int,
        default=6,
        metavar="N",
        help="market updates to show before the cut, and again after it (default: 6)",
    )


def _serve_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: 127.0.0.1, this machine only)",
    )
    p.add_argument(
        "--port",
        type=port,
        default=DEFAULT_PORT,
        help=f"port to listen on; 0 picks a free one (default: {DEFAULT_PORT})",
    )
    p.add_argument(
        "--interval",
        type=feed_interval,
        default=DEFAULT_INTERVAL,
        metavar="S",
        help=f"seconds between market updates (default: {DEFAULT_INTERVAL:g})",
    )
    p.add_argument(
        "--topics",
        nargs="+",
        type=topic,
        default=list(DEFAULT_TOPICS),
        metavar="TOPIC",
        help=f"topics that get the feed (default: {' '.join(DEFAULT_TOPICS)})",
    )


_COMMANDS: tuple[tuple[str, str, Callable[[argparse.ArgumentParser], None]], ...] = (
    ("listen", "join topics and print every message as one JSON line", _listen_options),
    ("push", "join a topic, push one event, print the reply as JSON", _push_options),
    ("demo", "a local server, a live feed, a cut and a resubscribe", _demo_options),
    (
        "serve",
        "run a local test server with a synthetic market feed (not Phoenix: joins are "
        "accepted, pushes echoed); prints its URL as the first line, runs until Ctrl-C",
        _serve_options,
    ),
)


def _parser(stx: bool = False) -> argparse.ArgumentParser:
    """The command line's parser; ``stx`` (``--stx`` is on the line) drops the URL argument
    of the commands that connect, since the host table gives it."""
    parser = argparse.ArgumentParser(
        prog="stx-ws",
        description="Phoenix Channels over WebSocket, from the command line.",
        epilog=EXIT_STATUS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {_version()}", help="print the version"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, text, add_options in _COMMANDS:
        p = sub.add_parser(
            name,
            help=text,
            description=text[0].upper() + text[1:] + ".",
            epilog=EXIT_STATUS_HELP,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        if add_options in (_listen_options, _push_options):
            _connection_options(p, stx)
        add_options(p)
        _log_options(p)
    return parser


def _check_retry(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Resolve the retry options into ``args.retry`` (a policy, or None for no reconnect);
    calls ``parser.error`` (exit status 2) for options that contradict each other."""
    if not hasattr(args, "no_reconnect"):
        return
    given = [args.retry_attempts, args.retry_initial_backoff, args.retry_max_backoff]
    if args.no_reconnect:
        if any(value is not None for value in given):
            parser.error("--no-reconnect cannot be combined with the --retry-* options")
        args.retry = None
        return
    initial = args.retry_initial_backoff or _DEFAULT_RETRY.initial_backoff
    longest = args.retry_max_backoff or max(_DEFAULT_RETRY.max_backoff, initial)
    if longest < initial:
        parser.error("--retry-max-backoff must be at least --retry-initial-backoff")
    # A handshake refused with a client error (a bad token, a wrong path) is final at once:
    # the command says why instead of asking again with the same request.
    args.retry = RetryPolicy(
        max_attempts=args.retry_attempts,
        initial_backoff=initial,
        max_backoff=longest,
        max_refusals=1,
    )


def _check_stx(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse (``parser.error``, exit status 2) the options that contradict ``--stx``:
    its credentials come from the environment or a profile, never from the line."""
    if not hasattr(args, "stx"):
        return
    if args.stx is None:
        if args.profile is not None:
            parser.error("--profile is an option of --stx")
        return
    given = [name for name in ("param", "header") if getattr(args, name)]
    given += ["token"] if args.token is not None else []
    if given:
        options = ", ".join(f"--{name}" for name in given)
        parser.error(
            f"--stx takes its credentials from the environment or a profile, not {options}"
        )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse the command line. Exits with status 2 and a message for a bad one."""
    argv = sys.argv[1:] if argv is None else list(argv)
    # --stx replaces the URL argument: the parser is made without it, so that the topics
    # that follow are not taken for a URL.
    stx = any(arg == "--stx" or arg.startswith("--stx=") for arg in argv)
    parser = _parser(stx)
    args = parser.parse_args(argv)
    _check_retry(parser, args)
    _check_stx(parser, args)
    return args


# ------------------------------------------------------------------------------------------------
# The commands


def _socket_from(args: argparse.Namespace, status: _Status) -> Socket:
    connected = False

    def on_open() -> None:
        nonlocal connected
        connected = True
        status("connected")

    def on_close(event: Disconnected) -> None:
        nonlocal connected
        was_connected, connected = connected, False
        if event.retry_at is None:
            return  # the last one: the command ends, and its error line says why if it failed
        what = "disconnected" if was_connected else "could not connect"
        status(f"{what}: {event.describe(anyio.current_time())}")

    def on_rejoin(channel: Channel) -> None:
        status(f"rejoined {channel.topic} (messages may have been missed)")

    if args.stx is not None:
        region, env = args.stx
        return STXWebSocket(
            region,
            env,
            profile=args.profile,
            vsn=args.vsn,
            timeout=args.timeout,
            retry=args.retry,
            on_open=on_open,
            on_close=on_close,
            on_rejoin=on_rejoin,
        )
    return Socket(
        args.url,
        params=dict(args.param) or None,
        auth_token=args.token,
        headers=args.header or None,
        vsn=args.vsn,
        timeout=args.timeout,
        retry=args.retry,
        on_open=on_open,
        on_close=on_close,
        on_rejoin=on_rejoin,
    )


async def listen(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Join every topic and print each message until interrupted, until the reader of ``out``
    goes away, or until the socket gives up (raised, as a StxWsError). Returns the exit
    status."""
    status = _Status(err)
    output = LineOutput(out)

    def show(msg: ChannelMessage) -> None:
        output.write(message_json(msg))

    async with _socket_from(args, status) as sock:
        with anyio.CancelScope() as reader_gone:
            output.on_gone = reader_gone.cancel
            for name in args.topics:
                await sock.join(name, args.payload, on_message=show)
                status(f"joined {name}")
            await sock.wait_closed()
    return EXIT_OK


async def push(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Join, push one event, print the reply's response as JSON. Returns the exit status;
    raises StxWsError if the join or the push fails."""
    status = _Status(err)
    async with _socket_from(args, status) as sock:
        channel = await sock.join(args.topic, args.join_payload)
        response = await channel.push(args.event, args.payload)
        LineOutput(out).write(json.dumps(_jsonable(response), ensure_ascii=False))
    return EXIT_OK


def _run_serve(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    run = functools.partial(
        serve, out, err, host=args.host, port=args.port, interval=args.interval, topics=args.topics
    )
    try:
        return anyio.run(run)
    except BrokenPipeError:
        raise
    except OSError as exc:
        _error(err, f"stx-ws: cannot listen on {args.host} port {args.port}: {exc.strerror}")
        return EXIT_FAILED


def _run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.command == "listen":
        return anyio.run(listen, args, out, err)
    if args.command == "push":
        return anyio.run(push, args, out, err)
    if args.command == "serve":
        return _run_serve(args, out, err)
    return anyio.run(demo, args.updates, out)


def main(
    argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Entry point of the ``stx-ws`` command; returns the exit status (see EXIT_STATUS_HELP).

    A bad command line exits at once (SystemExit with status 2, the message on stderr).
    """
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    args = parse_args(argv)
    with logging_to(err, args.log_level):
        try:
            return _run(args, out, err)
        except KeyboardInterrupt:
            return EXIT_OK
        except BrokenPipeError:  # the reader of the output went away
            silence(out)
            return EXIT_OK
        except UsageError as exc:
            _error(err, f"stx-ws: {exc}")
            return EXIT_USAGE
        except StxWsError as exc:
            _error(err, failure_line(exc))
            return EXIT_FAILED


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
