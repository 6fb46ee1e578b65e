"""A private 3-master Redis Cluster, from the local ``redis-server`` and ``redis-cli``.

Three ``redis-server --cluster-enabled yes`` nodes on free ports (each with its cluster
bus on a free port of its own, ``--cluster-port``), their ``nodes.conf`` in a temporary
directory, joined by ``redis-cli --cluster create ... --cluster-replicas 0``. No replicas
and no persistence: a node that is killed loses its entries, and keeps its slots (its
``nodes.conf`` survives), so when it is restarted on the same port it serves them again.
``cluster-require-full-coverage no`` lets the other nodes serve their slots meanwhile.

Skipped (failed under ``CI``) when the binaries are missing, like :mod:`tests.faults`.

Example (a test)::

    with private_cluster() as cluster:
        f = cached(backend="redis", redis_client=cluster.url)(g)
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

import redis

from tests.faults import START_S, Server, free_port, require_binary, start_process, wait_until_up

MASTERS = 3
#: How soon a silent node is marked failing (Redis' default is 15 s).
NODE_TIMEOUT_MS = 2000


@dataclass
class Cluster:
    """The nodes of a private cluster (each a :class:`~tests.faults.Server`)."""

    nodes: list[Server]

    @property
    def url(self) -> str:
        """A URL naming the first node, for ``redis_client=``: the client finds the rest."""
        return self.nodes[0].url.rsplit("/", 1)[0] + "/0?cluster=true"

    def node_of_slot(self, slot: int) -> Server:
        """The node serving ``slot`` (as the cluster reports it)."""
        for node in self.nodes:
            if node.process.poll() is None:
                break
        else:
            raise AssertionError("no node of the cluster is running")
        port = _port(node)
        with redis.Redis(port=port, socket_timeout=2) as client:
            for start, end, master, *_ in client.execute_command("CLUSTER SLOTS"):
                if start <= slot <= end:
                    owner = int(master[1])
                    return next(n for n in self.nodes if _port(n) == owner)
        raise AssertionError(f"no node serves slot {slot}")

    def wait_ok(self) -> None:
        """Wait until every node says the cluster is ok and knows all of its nodes."""
        deadline = time.monotonic() + START_S
        while not all(_ok(node) for node in self.nodes):
            if time.monotonic() > deadline:
                raise AssertionError(f"the cluster is not ok after {START_S:g} s")
            time.sleep(0.05)


def _port(node: Server) -> int:
    return int(node.url.rsplit(":", 1)[1].split("/")[0])


def _ok(node: Server) -> bool:
    try:
        with redis.Redis(port=_port(node), socket_timeout=1, socket_connect_timeout=1) as client:
            info = client.execute_command("CLUSTER INFO")  # parsed into a dict
    except redis.RedisError:
        return False
    return bool(info.get("cluster_state") == "ok" and int(info["cluster_known_nodes"]) == MASTERS)


def _node(binary: str, directory: str, index: int) -> Server:
    port, bus = free_port(), free_port()
    command = [
        binary,
        "--port",
        str(port),
        "--cluster-port",
        str(bus),
        "--bind",
        "127.0.0.1",
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        f"{directory}/nodes-{index}.conf",
        "--cluster-node-timeout",
        str(NODE_TIMEOUT_MS),
        "--cluster-require-full-coverage",
        "no",
        "--dir",
        directory,
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    client = redis.Redis(port=port, socket_timeout=1, socket_connect_timeout=1)
    server = Server("redis-server (cluster)", f"redis://127.0.0.1:{port}/0", start_process(command))
    server.command, server.probe = command, client.ping
    wait_until_up(server, client.ping)
    return server


@contextlib.contextmanager
def private_cluster() -> Iterator[Cluster]:
    """Start a 3-master cluster; stop its nodes by PID and remove its files afterwards."""
    binary = require_binary(shutil.which("redis-server"), "redis-server")
    cli = require_binary(shutil.which("redis-cli"), "redis-cli")
    directory = tempfile.mkdtemp(prefix="cachier-like-cluster-")
    nodes: list[Server] = []
    try:
        for index in range(MASTERS):
            nodes.append(_node(binary, directory, index))
        addresses = [f"127.0.0.1:{_port(node)}" for node in nodes]
        subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=START_S,
        )
        cluster = Cluster(nodes)
        cluster.wait_ok()
        yield cluster
    finally:
        for node in nodes:
            node.stop()
        shutil.rmtree(directory, ignore_errors=True)
