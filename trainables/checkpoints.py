"""A trial's reports and checkpoints: each checkpoint is written once, into the folder where Ray keeps it, by a
background thread while the next epoch trains; the report that carries it goes to Ray once the file is complete.

Ray's `report(checkpoint=Checkpoint.from_directory(d))` copies `d` into the trial's folder, so `state.pt` is written
straight into `checkpoint_<i+1>` (report increments the session's index i first) and Ray is handed an empty folder.
The training thread only copies the state into host memory; a Tune report blocks until the driver takes it, so the
reporter thread sends them, in order. Training waits for its reports only where something is decided on them
(ASHA's rungs, the last epoch, a failure). Checkpoint epochs: every `checkpoint_every`-th, the rungs and the last.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import ray.tune
import torch

from trainables.protocol import STATE_FILE, WEIGHTS_FILE

# every epoch: the training thread pays only a copy into host memory (benchmarks/checkpoint_cost.py, README)
DEFAULT_EVERY = 1


def checkpoint_payload(trainers, seeds, host: bool = False) -> dict:
    """Every seed's complete state, as one checkpoint file holds it."""
    return {"states": [t.state(host=host) for t in trainers], "seeds": list(seeds)}


def write_payload(payload: dict, directory: str, filesystem=None, last: bool = False) -> None:
    """torch.save into directory/state.pt, and with `last` (the trial's last epoch) the first seed's model weights
    into directory/model_weights.pt too. Locally through a temporary name and a rename, so that no reader meets
    half a file (a write that fails removes its temporary file); on another filesystem (s3://, gs://) straight
    into the object, which appears once complete."""
    import pyarrow.fs
    files = [(WEIGHTS_FILE, payload["states"][0]["model"])] if last else []
    files.append((STATE_FILE, payload))
    if filesystem is None or isinstance(filesystem, pyarrow.fs.LocalFileSystem):
        os.makedirs(directory, exist_ok=True)
        for name, obj in files:
            part = os.path.join(directory, name + ".part")
            try:
                torch.save(obj, part)
            except BaseException:  # a full disk, a stop: no half file left behind for someone to mistake
                with contextlib.suppress(OSError):
                    os.remove(part)
                raise
            os.replace(part, os.path.join(directory, name))
    else:
        filesystem.create_dir(directory)
        for name, obj in files:
            with filesystem.open_output_stream(f"{directory}/{name}") as f:
                torch.save(obj, f)


def _ray_storage():
    """The trial's StorageContext (Ray internals, checked here), or None where they are not as this module expects:
    then a checkpoint goes through a temporary folder that Ray copies."""
    try:
        from ray.train._internal.session import get_session
        from ray.train._internal.storage import StorageContext
        storage = get_session().storage
        if type(storage)._update_checkpoint_index is not StorageContext._update_checkpoint_index:
            return None  # the next checkpoint's folder would not be index + 1
        storage.current_checkpoint_index, storage.trial_fs_path, storage.storage_filesystem  # noqa: B018
        return storage
    except Exception:
        return None


class TrialReporter:
    """A trial's reports to Ray, sent in order by one background thread; a due checkpoint is written just before the
    report that carries it (see the module docstring)."""

    def __init__(self, study: dict, epochs: int):
        self.every = int(study.get("checkpoint_every") or DEFAULT_EVERY)
        self.decisions = {int(e) for e in study.get("checkpoint_epochs") or ()}
        self.epochs = int(epochs)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="aikd-reporter")
        self._last: Future | None = None
        self._stopped = False
        self._error: BaseException | None = None
        self._empty = tempfile.mkdtemp(prefix="aikd-ckpt-")  # what Ray "copies" into the folder written in place

    def checkpoint_due(self, epoch: int) -> bool:
        return epoch % self.every == 0 or epoch in self.decisions or epoch >= self.epochs

    def report(self, metrics: dict, trainers=None, seeds=()) -> None:
        """Report one epoch, with a checkpoint of `trainers` when due (none: a failure). Returns once the state is in
        host memory, or once Ray has the report where something is decided on it."""
        self._raise_pending()
        epoch = int(metrics.get("epoch", 0))
        due = trainers is not None and self.checkpoint_due(epoch)
        held = [checkpoint_payload(trainers, seeds, host=True)] if due else []
        self._last = self._pool.submit(self._send, metrics, held, epoch >= self.epochs)
        if trainers is None or epoch in self.decisions or epoch >= self.epochs:
            self.wait()

    def wait(self) -> None:
        """Until every report so far is with Ray; raises what the reporter met (a stop as Ray would: SystemExit)."""
        if self._last is not None:
            self._last.result()
        self._raise_pending()

    def close(self) -> None:
        """Let the reports in flight reach Ray (after a crash too), then end the thread; raises nothing."""
        self._pool.shutdown(wait=True)
        shutil.rmtree(self._empty, ignore_errors=True)

    def _raise_pending(self) -> None:
        if self._error is not None:
            raise self._error
        if self._stopped:  # Ray stopped the trial inside the reporter's report: end the trial as report would
            sys.exit(0)

    def _send(self, metrics: dict, held: list, last: bool) -> None:
        if self._stopped or self._error is not None:
            return
        try:
            if held:
                self._report_with_checkpoint(metrics, held, last)
            else:
                ray.tune.report(metrics)
        except SystemExit as e:  # the scheduler stopped the trial: Ray's report calls sys.exit(0)
            if e.code in (0, None):
                self._stopped = True
            else:
                self._error = e
        except BaseException as e:
            self._error = e

    def _report_with_checkpoint(self, metrics: dict, held: list, last: bool) -> None:
        storage = _ray_storage()
        if storage is None:
            d = tempfile.mkdtemp(prefix="aikd-ckpt-")
            try:
                write_payload(held.pop(), d, last=last)
                ray.tune.report(metrics, checkpoint=ray.tune.Checkpoint.from_directory(d))
            finally:
                shutil.rmtree(d, ignore_errors=True)
            return
        from ray.train._internal.storage import StorageContext
        name = StorageContext._make_checkpoint_dir_name(storage.current_checkpoint_index + 1)
        write_payload(held.pop(), Path(storage.trial_fs_path, name).as_posix(), storage.storage_filesystem, last=last)
        ray.tune.report(metrics, checkpoint=ray.tune.Checkpoint.from_directory(self._empty))
        if storage.checkpoint_dir_name != name:
            raise RuntimeError(f"the checkpoint was written into {name} but Ray registered "
                               f"{storage.checkpoint_dir_name}")


def save_checkpoint_state(directory, trainers, seeds) -> None:
    """Every seed's complete state (model, optimiser, method, RNG, per-epoch history) in one file, now."""
    write_payload(checkpoint_payload(trainers, seeds), str(directory))


def load_checkpoint_states(checkpoint) -> list[dict] | None:
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as d:
        return torch.load(Path(d) / STATE_FILE, map_location="cpu", weights_only=True)["states"]
