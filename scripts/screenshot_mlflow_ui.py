"""Screenshot of the MLflow UI's runs table: a study's parent run with its trials nested under it.

Starts `mlflow server` on 127.0.0.1 (a free port) over an existing backend store, waits for /health, and has
headless Chromium render the experiment's runs table to a PNG; the server is stopped (its whole process group)
afterwards. Installs nothing: it needs Debian's chromium (`apt-get install -y chromium`) and the project's mlflow.

    python scripts/screenshot_mlflow_ui.py --backend-store-uri sqlite:///mlflow.db [--experiment aikd-search]
        [--study NAME] [--out /tmp/mlflow_ui.png]

The UI keeps a parent run collapsed until someone clicks its expander, and keeps that choice in the browser's
localStorage (no URL parameter sets it; a shared view leaves it out). So the script first drives Chromium over the
DevTools protocol (a minimal WebSocket client below, standard library only): it opens the runs table, closes the
assistant side panel, clicks the expander of the study's parent run (tag role=study; the newest one unless --study
names it) and waits until the children's rows are drawn; then Chromium is closed, and the screenshot is taken with
`chromium --headless ... --screenshot` on the same browser profile, where the parent is now expanded.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout as `python scripts/...`: the project's packages
    sys.path.insert(0, str(ROOT))
from search.store import free_port, start_server, stop_server  # noqa: E402

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars"]


def find_parent(url: str, experiment: str, study: str | None):
    """(experiment id, parent run id, number of child runs) through the server's REST API."""
    from mlflow.tracking import MlflowClient
    c = MlflowClient(tracking_uri=url)
    exp = c.get_experiment_by_name(experiment)
    if exp is None:
        sys.exit(f"no experiment {experiment!r} in the store")
    flt = "tags.role = 'study'" + (f" and tags.study = '{study}'" if study else "")
    runs = c.search_runs([exp.experiment_id], filter_string=flt, order_by=["attributes.start_time DESC"],
                         max_results=1)
    if not runs:
        sys.exit(f"no study parent run in experiment {experiment!r}" + (f" named {study!r}" if study else ""))
    parent = runs[0].info.run_id
    kids = c.search_runs([exp.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent}'")
    return exp.experiment_id, parent, len(kids)


def page_url(url: str, experiment_id: str) -> str:
    return f"{url}/#/experiments/{experiment_id}/runs"


# ------------------------------------------------------------------------------------------------------------
# A minimal DevTools-protocol client: one WebSocket (RFC 6455, text frames, client-side masking) to one page.

class DevTools:
    def __init__(self, ws_url: str, timeout_s: float = 30.0):
        u = urllib.parse.urlparse(ws_url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=timeout_s)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {u.path} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
                          .encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("DevTools closed the connection during the handshake")
            head += chunk
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(f"DevTools refused the WebSocket: {head[:200]!r}")
        self.buf = head.split(b"\r\n\r\n", 1)[1]
        self.next_id = 0

    def _read(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("DevTools connection closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        n = len(payload)
        head = bytes([0x80 | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 1 << 16:
            head += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack(">Q", n)
        mask = os.urandom(4)
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def _message(self) -> dict:
        parts = []
        while True:
            b0, b1 = self._read(2)
            opcode, n = b0 & 0x0F, b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            mask = self._read(4) if b1 & 0x80 else None
            data = self._read(n)
            if mask:
                data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
            if opcode == 0x9:  # ping
                self._send_frame(0xA, data)
                continue
            if opcode == 0x8:
                raise ConnectionError("DevTools closed the connection")
            if opcode in (0x1, 0x0):
                parts.append(data)
                if b0 & 0x80:
                    return json.loads(b"".join(parts))

    def call(self, method: str, **params):
        self.next_id += 1
        self._send_frame(0x1, json.dumps({"id": self.next_id, "method": method, "params": params}).encode())
        while True:
            msg = self._message()
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def js(self, expression: str):
        r = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return r.get("result", {}).get("value")

    def wait_js(self, expression: str, timeout_s: float, what: str):
        end = time.time() + timeout_s
        while time.time() < end:
            v = self.js(expression)
            if v:
                return v
            time.sleep(0.5)
        raise TimeoutError(f"gave up waiting for {what}")

    def close(self) -> None:
        self.sock.close()


def _json_get(url: str, timeout_s: float):
    end = time.time() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return json.loads(r.read())
        except OSError:
            if time.time() > end:
                raise
            time.sleep(0.3)


# the row of the parent run (its link ends with the run id) and the expander button of its name cell
_ROW = "document.querySelector('a[href$=\"/runs/{run}\"]')"
_EXPANDER = _ROW + "?.closest('.ag-cell')?.querySelector('button[data-component-id*=\"runnamecellrenderer\"]')"
_ROWS = "document.querySelectorAll('.ag-center-cols-container [role=row], .ag-pinned-left-cols-container [role=row]')"


def expand_parent(chromium: str, profile: str, target: str, parent: str, n_children: int, size: str,
                  timeout_s: float = 90.0) -> None:
    """Open the runs table in Chromium, close the assistant panel and expand `parent`; the UI stores both in the
    profile's localStorage, which the screenshot run then reads."""
    port = free_port()
    proc = subprocess.Popen([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={size}",
                             f"--remote-debugging-port={port}", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _json_get(f"http://127.0.0.1:{port}/json/version", timeout_s)
        page = next(t for t in _json_get(f"http://127.0.0.1:{port}/json/list", 10) if t["type"] == "page")
        dt = DevTools(page["webSocketDebuggerUrl"])
        try:
            dt.call("Page.navigate", url=target)
            expander = _EXPANDER.format(run=parent)
            dt.wait_js(f"Boolean({expander})", timeout_s, "the parent run's row in the runs table")
            dt.js("document.querySelector('button[data-component-id=\"mlflow.assistant.chat_panel.close\"]')"
                  "?.click(); true")
            rows_before = dt.js(f"{_ROWS}.length")
            dt.js(f"{expander}.click(); true")
            # the children's rows are drawn (on both the pinned and the scrolling side of the table)
            dt.wait_js(f"{_ROWS}.length >= {rows_before} + 2 * {max(1, n_children)}", 30, "the child runs' rows")
            time.sleep(1.0)  # the UI state goes to localStorage on a short debounce
            try:
                dt.call("Browser.close")
            except (ConnectionError, OSError):
                pass
        finally:
            dt.close()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def screenshot(chromium: str, profile: str, target: str, out: Path, size: str, budget_ms: int) -> None:
    cmd = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={size}",
           f"--virtual-time-budget={budget_ms}", f"--screenshot={out}", target]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    if r.returncode != 0 or not out.exists():
        sys.exit(f"chromium failed (exit {r.returncode}):\n{r.stderr[-2000:]}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend-store-uri", default="sqlite:///mlflow.db", help="the store the study tracked to")
    p.add_argument("--experiment", default="aikd-search")
    p.add_argument("--study", help="study name (default: the newest study parent run)")
    p.add_argument("--out", default="/tmp/mlflow_ui.png")
    p.add_argument("--window-size", default="1600,1000")
    p.add_argument("--virtual-time-budget", type=int, default=15000, help="ms of page time before the shot")
    p.add_argument("--health-timeout", type=float, default=180.0)
    args = p.parse_args(argv)
    backend = args.backend_store_uri
    if backend.startswith("sqlite:///") and not backend.startswith("sqlite:////"):
        backend = "sqlite:///" + str(Path(backend[len("sqlite:///"):]).resolve())
    out = Path(args.out).resolve()
    out.unlink(missing_ok=True)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("chromium not found: apt-get install -y chromium")
    with tempfile.TemporaryDirectory(prefix="mlflow_ui_") as d:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        try:
            proc = start_server(backend, port, Path(d), timeout_s=args.health_timeout)
        except RuntimeError as e:
            sys.exit(str(e))
        try:
            experiment_id, parent, n_children = find_parent(url, args.experiment, args.study)
            target = page_url(url, experiment_id)
            profile = str(Path(d) / "chromium-profile")
            expand_parent(chromium, profile, target, parent, n_children, args.window_size)
            screenshot(chromium, profile, target, out, args.window_size, args.virtual_time_budget)
        finally:
            stop_server(proc)
    print(f"{out}: parent run {parent} with {n_children} child runs ({target})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
