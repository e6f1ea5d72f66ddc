"""A throwaway PostgreSQL server for tests: its own data directory, a unix socket only (nothing
listens on TCP), trust auth on that socket, and a socket directory only its owner can enter.

Debian's PostgreSQL 15 (``make deps``) refuses to run as root, so as root the server runs as
the ``postgres`` user; as anyone else, as that user.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import psycopg

BIN = Path("/usr/lib/postgresql/15/bin")


class PostgresServer:
    """``start()`` it once per session, ``database()`` per test, ``stop()`` at the end."""

    def __init__(self) -> None:
        if not (BIN / "postgres").exists():
            raise RuntimeError(f"PostgreSQL 15 is not installed ({BIN}); run 'make deps'")
        self.root = Path(tempfile.mkdtemp(prefix="kubehop-pg-"))
        self.data = self.root / "data"
        self.socket = self.root / "sock"
        self.log = self.root / "postgres.log"
        self.as_postgres = os.geteuid() == 0

    def _run(self, *argv: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if self.as_postgres else []
        result = subprocess.run([*prefix, *argv], capture_output=True, text=True, timeout=120,
                                check=False)
        if result.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"{argv[0]} failed: {result.stderr}{result.stdout}\n{log}")

    def start(self) -> None:
        self.socket.mkdir(mode=0o700)
        if self.as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
            shutil.chown(self.socket, "postgres", "postgres")
        self._run(str(BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "-E", "UTF8",
                  "--auth=trust", "--no-sync")
        # Durability off: a test server need not survive a power cut, and fsyncs slow tests.
        self._run(str(BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w",
                  "-t", "60", "start", "-o",
                  f"-k {self.socket} -c listen_addresses='' -c fsync=off "
                  "-c synchronous_commit=off -c full_page_writes=off")

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(str(BIN / "pg_ctl"), "-D", str(self.data), "-w", "-m", "fast", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def _admin(self, sql: str) -> None:
        with psycopg.connect(host=str(self.socket), user="postgres", dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(sql.encode())

    def url(self, dbname: str) -> str:
        return f"postgresql+psycopg://postgres@/{dbname}?host={self.socket}"

    def create_database(self) -> str:
        """A new empty database (its name, unique): each test starts from no schema at all."""
        name = f"kubehop_test_{uuid.uuid4().hex[:12]}"
        self._admin(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
