"""Running the sandbox PSP: in a thread of this process (tests, `payrail up`), or alone
(`payrail sandbox-psp`)."""

from __future__ import annotations

import asyncio
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

import uvicorn

from payrail.clock import Clock, SystemClock
from payrail.connectors.sandbox.app import create_app
from payrail.connectors.sandbox.config import SandboxConfig

BACKLOG = 1024
# On stop, requests still hanging in a timeout fault get this many seconds before being
# cancelled.
GRACEFUL_SHUTDOWN_SECONDS = 3


def _server(
    config: SandboxConfig, clock: Clock, grace_seconds: int = GRACEFUL_SHUTDOWN_SECONDS
) -> uvicorn.Server:
    return uvicorn.Server(
        uvicorn.Config(
            create_app(config, clock),
            log_level="warning",
            log_config=None,  # uvicorn's records go through our masking handlers
            lifespan="on",  # its shutdown stops webhook deliveries still on their way
            backlog=BACKLOG,
            timeout_graceful_shutdown=grace_seconds,
        )
    )


def _bind(host: str, port: int) -> socket.socket:
    """A socket listening before the server starts, so the caller knows the port (port 0
    picks a free one without the race of probing first) and early connections queue."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    # proto must say TCP: asyncio sets TCP_NODELAY on accepted connections only then, and
    # without it every keep-alive reply waits out the client's delayed ACK (~40 ms).
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
    except BaseException:
        sock.close()
        raise
    return sock


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@contextmanager
def run_sandbox(
    config: SandboxConfig,
    clock: Clock,
    *,
    grace_seconds: int = GRACEFUL_SHUTDOWN_SECONDS,
    host: str = "127.0.0.1",
    port: int = 0,
) -> Iterator[str]:
    """The sandbox served from a thread (port 0: a free one); yields its base URL and stops
    it on exit (cancelling, after ``grace_seconds``, requests still hanging)."""
    sock = _bind(host, port)
    server = _server(config, clock, grace_seconds)
    thread = threading.Thread(target=asyncio.run, args=(server.serve(sockets=[sock]),), daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError("the sandbox PSP did not start")
        time.sleep(0.01)
    try:
        yield _url(sock)
    finally:
        server.should_exit = True
        thread.join(timeout=grace_seconds + 10)
        sock.close()


async def serve(
    config: SandboxConfig,
    host: str,
    port: int,
    *,
    clock: Clock | None = None,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until the server is told to stop (Ctrl-C or SIGTERM when in the main thread);
    ``ready`` gets the base URL once the port listens."""
    sock = _bind(host, port)
    try:
        server = _server(config, clock or SystemClock())
        if ready is not None:
            ready(_url(sock))
        await server.serve(sockets=[sock])
    finally:
        sock.close()


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def run(config: SandboxConfig, host: str, port: int, ready: Callable[[str], None]) -> None:
    """`payrail sandbox-psp`: serve until Ctrl-C or SIGTERM, then return."""
    # uvicorn stops gracefully on either signal and then re-raises it; make SIGTERM unwind
    # like Ctrl-C instead of killing the process, so both end with a clean exit.
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        asyncio.run(serve(config, host, port, ready=ready))
    except KeyboardInterrupt:
        pass
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise
    finally:
        signal.signal(signal.SIGTERM, previous)
