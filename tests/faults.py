"""Private servers for fault tests: started on free ports, hung, resumed and stopped by PID.

The shared services (Redis on 6379, PostgreSQL on 5432, MariaDB on 3306) are never
touched: a test that stops a server (``SIGSTOP``, which leaves the kernel accepting
connections and acknowledging data while the server answers nothing: a hang, not a
crash) gets a server of its own. A server is skipped (failed under ``CI``) when its
binaries are missing.

- :func:`private_redis`: ``redis-server --port N --save ''``.
- :func:`private_postgres`: ``initdb`` into a temporary directory, then ``postgres`` on
  a free port, as the ``postgres`` user when the tests run as root.
- :func:`private_mariadb`: ``mariadb-install-db``, then ``mariadbd`` on a free port
  (``--skip-grant-tables``: ``root`` without a password), as ``mysql`` under root.

A server can also crash and come back: :meth:`Server.kill` (``SIGKILL``, as ``kill -9``),
:meth:`Server.stop_immediately` (PostgreSQL: ``pg_ctl stop -m immediate``, no checkpoint)
and :meth:`Server.restart` (the same command: the same port and data directory; Redis
runs without persistence, so its entries are lost and recomputed).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from tests.backends.services import require_service

#: How long a server may take to start answering.
START_S = 30.0


def free_port() -> int:
    """A TCP port nothing listens on now (the kernel's pick)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def children_of(pid: int) -> list[int]:
    """The PIDs whose parent is ``pid`` (Linux ``/proc``)."""
    found = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        if int(fields[1]) == pid:
            found.append(int(stat.split("/")[2]))
    return found


@dataclass
class Server:
    """A private server process (and the processes it forks, e.g. PostgreSQL backends)."""

    name: str
    url: str
    process: subprocess.Popen[bytes]
    command: list[str] = field(default_factory=list)  # what started it, to start it again
    probe: Callable[[], object] | None = None  # raises until the server answers
    user: str | None = None  # the user it runs as (PostgreSQL refuses root)
    immediate_stop: list[str] = field(default_factory=list)  # e.g. pg_ctl stop -m immediate
    hung: list[int] = field(default_factory=list)
    stop_signal: int = signal.SIGTERM  # PostgreSQL: SIGINT (SIGTERM waits for its clients)
    resumed_at: float = 0.0  # time.monotonic() of the last resume
    up_at: float = 0.0  # time.monotonic() at which it answered after the last restart
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def pids(self) -> list[int]:
        """The server's process and its children."""
        return [self.process.pid, *children_of(self.process.pid)]

    def hang(self, for_s: float | None = None) -> None:
        """``SIGSTOP`` every process of the server: it stops answering, connections stay.

        With ``for_s``, a timer resumes it that much later, whatever the test is doing
        (so code that blocks on the hung server cannot block the test forever).
        """
        with self._lock:
            assert not self.hung, "already hung"
            os.kill(self.process.pid, signal.SIGSTOP)  # first, so it forks no more children
            self.hung = self.pids()
            for pid in self.hung[1:]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGSTOP)
        if for_s is not None:
            timer = threading.Timer(for_s, self.resume)
            timer.daemon = True
            timer.start()

    def resume(self) -> None:
        """``SIGCONT`` every process ``hang`` stopped (nothing if it is not hung)."""
        with self._lock:
            if not self.hung:
                return
            for pid in reversed(self.hung):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
            self.hung = []
            self.resumed_at = time.monotonic()

    def kill(self) -> None:
        """``SIGKILL`` the server and its children, as ``kill -9`` would; wait for it to die."""
        with self._lock:
            for pid in self.pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self.process.wait(START_S)

    def stop_immediately(self) -> None:
        """Stop at once without a clean shutdown (``pg_ctl stop -m immediate``), or kill."""
        if not self.immediate_stop:
            self.kill()
            return
        subprocess.run(
            self.immediate_stop, user=self.user, check=True, capture_output=True, timeout=START_S
        )
        self.process.wait(START_S)

    def restart(self) -> None:
        """Start the server again with its command (same port, same data); wait until up."""
        assert self.process.poll() is not None, "still running: kill or stop it first"
        assert self.probe is not None, f"{self.name} cannot be restarted"
        self.process = start_process(self.command, self.user)
        wait_until_up(self, self.probe)
        self.up_at = time.monotonic()

    def stop(self) -> None:
        """Resume if hung, then end the server by its PID."""
        self.resume()
        if self.process.poll() is None:
            self.process.send_signal(self.stop_signal)
            try:
                self.process.wait(START_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_process(command: list[str], user: str | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        command, user=user, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def wait_until_up(server: Server, probe: Callable[[], object]) -> None:
    deadline = time.monotonic() + START_S
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited at start ({server.process.returncode})")
        try:
            probe()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def require_binary(path: str | None, name: str) -> str:
    if path is None:
        require_service(name, _missing(name), f"install {name} to run the fault tests")
    assert path is not None
    return path


def _missing(name: str) -> Callable[[], object]:
    def probe() -> object:
        raise FileNotFoundError(f"no {name} binary")

    return probe


@contextlib.contextmanager
def private_redis(extra: Sequence[str] = ()) -> Iterator[Server]:
    """A Redis server of this test's own, on a free port, without persistence (``extra``:
    more ``redis-server`` arguments, e.g. ``["--rename-command", "CLIENT", ""]``)."""
    import redis

    binary = require_binary(shutil.which("redis-server"), "redis-server")
    port = free_port()
    command = [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        *extra,
    ]
    client = redis.Redis(port=port, socket_timeout=1, socket_connect_timeout=1)
    url = f"redis://127.0.0.1:{port}/0"
    server = Server("redis-server", url, start_process(command), command, client.ping)
    try:
        wait_until_up(server, client.ping)
        yield server
    finally:
        server.stop()
        client.close()


def _postgres_bin() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    path = found[-1] if found else shutil.which("postgres")
    return None if path is None else os.path.dirname(path)


@contextlib.contextmanager
def private_postgres() -> Iterator[Server]:
    """A PostgreSQL cluster of this test's own (trust auth, database ``postgres``)."""
    import psycopg

    bindir = require_binary(_postgres_bin(), "postgres")
    user = "postgres" if os.geteuid() == 0 else None  # initdb refuses to run as root
    base = tempfile.mkdtemp(prefix="cachier-like-pg-")
    if user is not None:
        os.chown(base, pwd.getpwnam(user).pw_uid, -1)
    data, port = os.path.join(base, "data"), free_port()
    server: Server | None = None
    try:
        subprocess.run(
            [f"{bindir}/initdb", "-D", data, "-U", "postgres", "--auth=trust", "--no-sync"],
            user=user,
            check=True,
            capture_output=True,
            timeout=120,
        )
        settings = ["listen_addresses=127.0.0.1", f"unix_socket_directories={base}", "fsync=off"]
        command = [f"{bindir}/postgres", "-D", data, "-p", str(port)]
        for setting in settings:
            command += ["-c", setting]

        def probe() -> None:
            psycopg.connect(
                host="127.0.0.1", port=port, user="postgres", dbname="postgres", connect_timeout=2
            ).close()

        url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
        server = Server(
            "postgres",
            url,
            start_process(command, user),
            command,
            probe,
            user,
            immediate_stop=[f"{bindir}/pg_ctl", "stop", "-D", data, "-m", "immediate", "-w"],
            stop_signal=signal.SIGINT,
        )
        wait_until_up(server, probe)
        yield server
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(base, ignore_errors=True)


def _sbin(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")


@contextlib.contextmanager
def private_mariadb() -> Iterator[Server]:
    """A MariaDB server of this test's own, with a database ``test``."""
    import sqlalchemy as sa

    server_binary = require_binary(_sbin("mariadbd"), "mariadbd")
    install = require_binary(_sbin("mariadb-install-db"), "mariadb-install-db")
    user = "mysql" if os.geteuid() == 0 else None
    base = tempfile.mkdtemp(prefix="cachier-like-mariadb-")
    if user is not None:
        os.chown(base, pwd.getpwnam(user).pw_uid, -1)
    data, port = os.path.join(base, "data"), free_port()
    as_user = [f"--user={user}"] if user is not None else []
    server: Server | None = None
    try:
        subprocess.run(
            [install, "--no-defaults", f"--datadir={data}", "--skip-test-db", *as_user],
            check=True,
            capture_output=True,
            timeout=120,
        )
        command = [
            server_binary,
            "--no-defaults",
            f"--datadir={data}",
            f"--port={port}",
            "--bind-address=127.0.0.1",
            f"--socket={base}/mariadb.sock",
            f"--pid-file={base}/mariadb.pid",
            "--skip-grant-tables",
            "--skip-log-bin",
            "--innodb-buffer-pool-size=32M",
            *as_user,
        ]
        url = f"mysql+pymysql://root@127.0.0.1:{port}/test"
        server = Server("mariadbd", url, start_process(command), command)

        def probe() -> None:
            url = f"mysql+pymysql://root@127.0.0.1:{port}/"
            engine = sa.create_engine(url, connect_args={"connect_timeout": 2})
            try:
                with engine.begin() as connection:
                    connection.execute(sa.text("CREATE DATABASE IF NOT EXISTS test"))
            finally:
                engine.dispose()

        server.probe = probe
        wait_until_up(server, probe)
        yield server
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(base, ignore_errors=True)
