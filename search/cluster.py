"""Cluster checks: a multi-node study needs storage that every node can reach.

Ray Tune writes each trial's results and checkpoints to `--storage` from the node the trial runs on, and a retried
trial reads its checkpoint back on whichever node takes it, so a local folder that only the driver's machine has
would lose checkpoints (or fail late, in the middle of the study). `check_storage_reachable` finds out before any
trial starts: the driver writes a probe file, every node reads it and writes one of its own, and the driver reads
those back.

Test hook: a node whose environment has `AIKD_STORAGE_PROBE_HIDE=1` probes a private temporary folder instead of
the storage path, exactly what a node with its own local disk at that path would see. On one machine every node
shares the disk, so this is how the tests make one node "remote" (`Cluster.add_node(env_vars=...)`).
"""

from __future__ import annotations

import os
import socket
import tempfile
import uuid
from pathlib import Path

PROBE_HIDE_ENV = "AIKD_STORAGE_PROBE_HIDE"
PROBE_TIMEOUT_S = 120


def _probe(path: str, token: str, node_id: str) -> dict:
    """Runs on a node: does it see the driver's probe file, and can it leave one for the driver?"""
    root = Path(path)
    if os.environ.get(PROBE_HIDE_ENV) == "1":  # test hook: this node's view of the path is a disk of its own
        root = Path(tempfile.mkdtemp(prefix="aikd-probe-")) / root.name
        root.mkdir()
    p = root / f".probe-{token}"
    seen = p.exists() and p.read_text() == token
    wrote = False
    if root.is_dir():  # never create the folder here: a node-local copy would hide the problem
        try:
            (root / f".probe-{token}-{node_id}").write_text(token)
            wrote = True
        except OSError:
            pass
    return {"seen": seen, "wrote": wrote, "host": socket.gethostname()}


def alive_nodes(ray) -> list[dict]:
    return [n for n in ray.nodes() if n.get("Alive")]


def check_storage_reachable(ray, storage: str, driver_on_a_node: bool = True) -> None:
    """Fail fast when --storage is a local folder that another node cannot see (a probe file per node).

    `driver_on_a_node=False` (a Ray Client driver, `--address ray://`): the driver's machine need not be a node at
    all, and Tune writes the experiment state from the head while the driver reads the study folder for the report,
    so even a one-node cluster is probed."""
    if "://" in storage:
        return  # s3://, gs://, ...: reachable by construction
    nodes = alive_nodes(ray)
    if len(nodes) <= 1 and driver_on_a_node:
        return
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from search.run import UsageError
    root = Path(storage)
    root.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    probe = root / f".probe-{token}"
    probe.write_text(token)
    problems = {}
    try:
        task = ray.remote(num_cpus=0, max_retries=0)(_probe)
        refs = {n["NodeID"]: task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
                .remote(storage, token, n["NodeID"]) for n in nodes}
        for nid, ref in refs.items():
            host = next((n.get("NodeManagerHostname") or n.get("NodeManagerAddress", "?") for n in nodes
                         if n["NodeID"] == nid), "?")
            try:
                r = ray.get(ref, timeout=PROBE_TIMEOUT_S)
            except Exception as e:  # the node died or could not start a worker: it cannot be trusted either
                problems[nid] = f"host {host}: probe failed ({type(e).__name__})"
                continue
            back = root / f".probe-{token}-{nid}"
            if not r["seen"]:
                problems[nid] = f"host {r['host']}: does not see {probe}"
            elif not (r["wrote"] and back.exists() and back.read_text() == token):
                problems[nid] = f"host {r['host']}: its writes do not reach the driver"
    finally:
        for f in root.glob(f".probe-{token}*"):
            f.unlink(missing_ok=True)
    if problems:
        nid, why = next(iter(problems.items()))
        kind, sharers = (("multi-node", "every node") if driver_on_a_node
                         else ("Ray Client", "every node and this driver"))
        raise UsageError(f"--storage {storage} is not visible from {len(problems)} of {len(nodes)} Ray nodes "
                         f"(node {nid[:12]}, {why}); a {kind} study needs --storage on a file system shared by "
                         f"{sharers} (the same path everywhere) or an s3:// / gs:// URI")
