"""Helpers for the fault-tolerance tests: processes by PID, free ports, MLflow servers, study folders."""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

from search.store import free_port, start_server, stop_server
from tests.search.conftest import ROOT
from trainables.protocol import read_results

RUN = str(ROOT / "search/run.py")


def cli_env(extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env.update(extra or {})
    env["PYTHONPATH"] = str(ROOT)
    env["PYTHONUNBUFFERED"] = "1"  # the log file shows each line as it is printed (tests wait on them)
    return env


def start_cli(args, cwd, log_path, env=None) -> subprocess.Popen:
    """search/run.py in its own session (process group), output to a file: for tests that kill it."""
    log = open(log_path, "w")
    return subprocess.Popen([sys.executable, RUN, *args], stdout=log, stderr=subprocess.STDOUT, cwd=cwd,
                            env=cli_env(env), start_new_session=True)


def stop_cli(p: subprocess.Popen | list[subprocess.Popen], procs: dict[int, int] | None = None) -> None:
    """A test's teardown after `start_cli`: SIGKILL the CLI's process group where it still runs (and reap it), then
    each recorded process (`descendants`: PID -> start time) that outlived it, since Ray's workers run in process
    groups of their own. `p` may be a list of CLIs."""
    for cli in p if isinstance(p, list) else [p]:
        if cli.poll() is None:
            os.killpg(cli.pid, signal.SIGKILL)
            cli.wait(timeout=30)
    if procs:
        kill_recorded(procs)


# ---- processes ----------------------------------------------------------------------------------------------

def _stat(pid: int):
    """(ppid, start time) of a live process, or None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2:].split()
    return int(fields[1]), int(fields[19])


def descendants(root: int) -> dict[int, int]:
    """PID -> start time of `root` and every process below it (by parent links), read from /proc."""
    stats = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = _stat(int(name))
            if st:
                stats[int(name)] = st
    out, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if pid in stats and pid not in out:
            out[pid] = stats[pid][1]
            todo += [p for p, (ppid, _) in stats.items() if ppid == pid]
    return out


def kill_recorded(procs: dict[int, int], sig=signal.SIGKILL, wait_s: float = 10.0) -> list[int]:
    """Signal each recorded process that is still the same process (PID and start time); returns those signalled."""
    hit = []
    for pid, start in procs.items():
        st = _stat(pid)
        if st and st[1] == start:
            try:
                os.kill(pid, sig)
                hit.append(pid)
            except ProcessLookupError:
                pass
    end = time.time() + wait_s
    while time.time() < end and any((_stat(p) or (0, None))[1] == procs[p] for p in hit):
        time.sleep(0.2)
    return hit


def alive(procs: dict[int, int]) -> list[int]:
    out = []
    for pid, start in procs.items():
        st = _stat(pid)
        if st and st[1] == start and "Z" not in _state(pid):
            out.append(pid)
    return out


def _state(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
        return raw[raw.rindex(")") + 2:].split()[0]
    except OSError:
        return "X"


def listening(pid: int) -> list[tuple[str, int]]:
    """(address, port) of each TCP socket the process listens on, from /proc (no psutil here)."""
    inodes = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return []
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    out = []
    for name, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        try:
            lines = Path(f"/proc/{pid}/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if f[3] != "0A" or f[9] not in inodes:  # 0A: LISTEN
                continue
            hexip, hexport = f[1].split(":")
            raw = b"".join(struct.pack("<I", int(hexip[i:i + 8], 16)) for i in range(0, len(hexip), 8))
            out.append((socket.inet_ntop(family, raw), int(hexport, 16)))
    return out


def is_loopback(addr: str) -> bool:
    return addr.startswith("127.") or addr in ("::1", "::ffff:127.0.0.1") or addr.startswith("::ffff:127.")


# ---- MLflow server --------------------------------------------------------------------------------------------

class MlflowServer:
    """`mlflow server --workers 1` on 127.0.0.1 (search.store.start_server), SQLite backend, in its own process
    group; stop/start keep the port and the database (an outage and a return)."""

    def __init__(self, d: Path, port: int | None = None):
        self.dir, self.port = Path(d), port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self, timeout_s: float = 180) -> None:
        self.starts += 1
        self.proc = start_server(f"sqlite:///{self.dir}/mlflow.db", self.port, self.dir,
                                 log_name=f"server-{self.starts}.log", artifacts=self.dir / "artifacts",
                                 timeout_s=timeout_s)

    def stop(self, sig=signal.SIGKILL) -> None:
        """Kill the server's whole process group (gunicorn/uvicorn workers included)."""
        if self.proc is None:
            return
        stop_server(self.proc, sig)
        self.proc = None


# ---- study folders --------------------------------------------------------------------------------------------

def results(trial_dir: Path) -> list[dict]:
    return read_results(Path(trial_dir) / "result.json")


def trial_dirs(study_dir: Path) -> list[Path]:
    return sorted(p for p in Path(study_dir).iterdir() if p.is_dir() and p.name.startswith("trial_"))


def wait_for(pred, timeout_s: float, what: str, every_s: float = 0.5, proc: subprocess.Popen | None = None):
    end = time.time() + timeout_s
    while time.time() < end:
        v = pred()
        if v:
            return v
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process ended (exit {proc.returncode}) while waiting for {what}")
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
