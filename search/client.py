"""Ray Client (`--address ray://HEAD:PORT`): what changes when the driver is a client of the cluster.

With Ray Client, `tune.Tuner` runs the experiment inside an actor on the head node (ray/tune/tuner.py: a
`TunerInternal` actor placed on the client server's node), so the Tune callbacks run there, not in the driver:

- what they print would land in that actor's log on the head, and what they count (peak concurrency, status
  updates the MLflow server did not take) would stay in the actor's copy. `DriverRelay` sends it back to the driver
  instead, through a named actor that the driver drains (`RelayListener`). The relay holds only the actor's name
  (one per study), so the callbacks still pickle (Tune stores them in the experiment state, tuner.pkl, and restores
  them on --resume, when they find the resuming driver's relay by that name); with no listener (the callback runs
  in the driver itself) `send` says so and the callback prints as before;
- Tune's controller reads `TUNE_MAX_PENDING_TRIALS_PG` from the actor's environment, which is the job's runtime_env,
  fixed when the client connects, before the driver knows the cluster's size. `TuneEnvironment` carries the value in
  the run config and sets it when the run config is unpickled in the actor, which happens before the controller
  starts (no callback hook runs that early).
"""

from __future__ import annotations

import os
import threading

from ray import tune

RELAY_PREFIX = "aikd-relay-"
RELAY_TIMEOUT_S = 30.0


def is_client() -> bool:
    """Is this process a Ray Client driver (connected with ray://)?"""
    import ray
    return ray.util.client.ray.is_connected()


def parse_address(address: str) -> tuple[str, int]:
    """HOST:PORT (the head's GCS) or ray://HOST:PORT (its Ray Client server) -> (HOST, PORT); ValueError naming
    the expected form."""
    rest = address[len("ray://"):] if address.startswith("ray://") else address
    host, sep, port = rest.rpartition(":")
    if "/" in rest or not sep or not host.strip("[]") or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{address!r}: expected auto, HOST:PORT (the head's GCS port, 6379 with `ray start --head`) "
                         "or ray://HOST:PORT (its Ray Client server, port 10001)")
    return host.strip("[]"), int(port)


class _Relay:
    """The named actor: a list the callbacks append to and the driver empties."""

    def __init__(self):
        self.items = []

    def put(self, kind, value):
        self.items.append((kind, value))

    def take(self):
        items, self.items = self.items, []
        return items


class DriverRelay:
    """Callback side: `send(kind, value)` to the driver's `RelayListener`; False when no listener takes it."""

    def __init__(self, name: str):
        self.name = name
        self._actor = None
        self._off = False

    def __getstate__(self):  # no actor handle in Tune's pickled experiment state
        return {"name": self.name}

    def __setstate__(self, state):
        self.__init__(state["name"])

    def send(self, kind: str, value) -> bool:
        if self._off:
            return False
        try:
            import ray
            if self._actor is None:
                if not ray.is_initialized():
                    raise RuntimeError("no Ray here")
                self._actor = ray.get_actor(self.name)  # ValueError: no driver listening
            ray.get(self._actor.put.remote(kind, value), timeout=RELAY_TIMEOUT_S)  # in the actor before fit returns
            return True
        except Exception:
            self._off = True  # from now on the callback prints where it runs
            return False


class RelayListener:
    """Driver side: the named relay actor and a thread handing what arrives to `handle(kind, value)`.

    Use as a context manager around `tuner.fit()`; on exit everything sent so far has been handled."""

    def __init__(self, name: str, handle, every_s: float = 0.5):
        self.name, self.handle, self.every_s = name, handle, every_s
        self._actor = None
        self._stop = threading.Event()
        self._thread = None
        self.error = None

    def __enter__(self):
        import ray
        self._actor = ray.remote(num_cpus=0, max_restarts=0)(_Relay).options(name=self.name,
                                                                              get_if_exists=True).remote()
        ray.get(self._actor.take.remote())  # started and registered under its name before Tune looks for it
        self._thread = threading.Thread(target=self._loop, name="aikd-relay", daemon=True)
        self._thread.start()
        return self

    def _drain(self):
        import ray
        for kind, value in ray.get(self._actor.take.remote(), timeout=RELAY_TIMEOUT_S):
            self.handle(kind, value)

    def _loop(self):
        while not self._stop.wait(self.every_s):
            try:
                self._drain()
            except Exception as e:  # keep the study going; what is left is drained on exit
                self.error = e

    def __exit__(self, *exc):
        import ray
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=RELAY_TIMEOUT_S + 5)
        try:
            self._drain()
        except Exception as e:
            self.error = e
        finally:
            try:
                ray.kill(self._actor)
            except Exception:
                pass
        return False


class TuneEnvironment(tune.Callback):
    """Sets environment variables (existing values win) where it is unpickled: in the Tuner actor on the head with
    Ray Client, before Tune's controller starts. Otherwise a callback that does nothing."""

    def __init__(self, env: dict):
        self.env = {k: str(v) for k, v in env.items()}

    def __setstate__(self, state):
        self.__dict__.update(state)
        for k, v in self.env.items():
            os.environ.setdefault(k, v)
