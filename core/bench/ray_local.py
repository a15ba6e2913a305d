"""A real Ray cluster on this machine, for the tests and the Ray benchmark: a head node and more nodes, each a
`ray start --block` process with its own explicit ports and resources, stopped by its process group (never
`ray stop`, which would stop every Ray on the machine)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))


def free_ports(count: int) -> list[int]:
    sockets, ports = [], []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
        ports.append(s.getsockname()[1])
    for s in sockets:
        s.close()
    return ports


STARTED = "Ray runtime started."  # what `ray start` prints once its node is up
RESTARTED = "\n-- flora: started again --\n"  # written into a node's log before a second start
WORKER_PORTS = 200  # each node's workers listen on a range of their own
STOP_GRACE_SECONDS = 10  # after SIGTERM, a node that has not ended is killed with its process group
WORKER_BASE, WORKER_TOP = 12000, 32000  # below the ephemeral ports the other components were given


def worker_port_range(taken: list[int]) -> int:
    """The first of WORKER_PORTS ports for a node's workers: below the ephemeral range, clear of `taken`
    (Ray refuses a range that holds a port another component uses), drawn at random so nodes differ."""
    import random

    while True:
        start = WORKER_BASE + random.randrange((WORKER_TOP - WORKER_BASE) // WORKER_PORTS) * WORKER_PORTS
        if not any(start <= port < start + WORKER_PORTS for port in taken):
            return start


class LocalRayCluster:
    def __init__(self):
        # Ray's socket paths must stay short (107 bytes): a folder of its own directly under /tmp
        self.temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
        self.nodes: list[subprocess.Popen] = []
        self.port = free_ports(1)[0]
        self.address = f"127.0.0.1:{self.port}"

    def _start(self, head: bool, cpus: int, resources: str | None = None) -> subprocess.Popen:
        p = free_ports(9)  # from the ephemeral range (32768 and up here)
        workers = worker_port_range(p)
        command = [RAY, "start", "--block", f"--num-cpus={cpus}", "--num-gpus=0", "--disable-usage-stats"]
        command += [
            f"--node-manager-port={p[0]}",
            f"--object-manager-port={p[1]}",
            f"--metrics-export-port={p[2]}",
            f"--dashboard-agent-listen-port={p[3]}",
            f"--dashboard-agent-grpc-port={p[4]}",
            f"--runtime-env-agent-port={p[5]}",
            f"--min-worker-port={workers}",
            f"--max-worker-port={workers + WORKER_PORTS - 1}",
            "--object-store-memory=200000000",
        ]
        if head:
            command += [
                "--head",
                f"--port={self.port}",
                f"--ray-client-server-port={p[7]}",
                "--include-dashboard=false",
                f"--temp-dir={self.temp}",
            ]
        else:
            command += [f"--address={self.address}"]
        if resources:
            command += [f"--resources={resources}"]
        output = open(Path(self.temp) / f"node-{len(self.nodes)}.log", "wb")  # noqa: SIM115  (the node's, till it ends)
        node = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True, env=os.environ
        )
        output.close()  # the child keeps its own handle
        self.nodes.append(node)
        return node

    def start(self, nodes: int = 2, timeout: float = 120, cpus: int = 1) -> LocalRayCluster:
        """A head and `nodes - 1` more nodes of `cpus` CPUs each; returns when all have joined."""
        self._start(head=True, cpus=cpus)
        self._wait_for(1, timeout)
        for _ in range(nodes - 1):
            self._start(head=False, cpus=cpus)
        self._wait_for(nodes, timeout)
        return self

    def add_node(self, cpus: int = 1, timeout: float = 120):
        """One more node of `cpus` CPUs; returns its process (for `kill_node`) once it has joined."""
        node = self._start(head=False, cpus=cpus)
        self._wait_for(len(self.nodes), timeout)
        return node

    def _wait_for(self, count: int, timeout: float) -> None:
        """Until `count` nodes are up. A node (not the head) that exits while joining is started again once:
        on 2 busy cores one can miss its time to reach the head."""
        deadline = time.time() + timeout
        restarted: set[int] = set()
        while time.time() < deadline:
            # asked once every node has said it started, not every second while they start
            if all(self._said_started(number) for number in range(len(self.nodes))) and self._alive() >= count:
                return
            for number, node in enumerate(self.nodes):
                if node.poll() is not None:
                    said = (Path(self.temp) / f"node-{number}.log").read_text(errors="replace")[-1500:]
                    if number == 0 or number in restarted:
                        raise RuntimeError(f"Ray node {number} exited ({node.returncode}) while starting: {said}")
                    restarted.add(number)
                    self.nodes[number] = self._restart(number)
            time.sleep(0.5)
        raise TimeoutError(f"{count} Ray node(s) did not come up in {timeout} s")

    def _alive(self) -> int:
        """How many nodes the head's GCS lists as alive, asked from this process once every node's `ray start` said it
        started (the GCS answers by then): `ray status`, a new Python process importing Ray, cost ~2 CPU-s a call."""
        import ray._raylet  # heavy: Ray, asked for only where a cluster is started
        from ray.core.generated.gcs_pb2 import GcsNodeInfo
        from ray.exceptions import RayError

        try:
            nodes = ray._raylet.GcsClient(address=self.address).get_all_node_info(timeout=30)
        except RayError:  # its RPC failed (RpcError): asked again on the next pass
            return 0
        return sum(1 for info in nodes.values() if info.state == GcsNodeInfo.ALIVE)

    def _said_started(self, number: int) -> bool:
        """Node `number`'s `ray start` printed that its runtime started (its log, since its last start)."""
        log = (Path(self.temp) / f"node-{number}.log").read_text(errors="replace")
        return STARTED in log.rsplit(RESTARTED, 1)[-1]

    def _restart(self, number: int) -> subprocess.Popen:
        command = list(self.nodes[number].args)
        output = open(Path(self.temp) / f"node-{number}.log", "ab")  # noqa: SIM115  (the node's)
        output.write(RESTARTED.encode())
        output.flush()
        node = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True, env=os.environ
        )
        output.close()
        return node

    def kill_node(self, node: subprocess.Popen) -> None:
        """Kill a node and everything it started (its process group), as a machine going down would."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(node.pid, signal.SIGKILL)
        node.wait(timeout=30)

    def stop(self) -> None:
        for node in reversed(self.nodes):
            if node.poll() is None:
                try:
                    os.killpg(node.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        # one grace period for all: they end in parallel, so a slow head does not hold a node's grace back too
        # (waiting each in turn, a test's cluster took 20 s to stop)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for node in self.nodes:
            try:
                node.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:  # `ray start --block` can sit on its children: the group goes
                self.kill_node(node)
        import shutil

        shutil.rmtree(self.temp, ignore_errors=True)
