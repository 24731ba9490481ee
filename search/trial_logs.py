"""Tune's per-trial log files (result.json, progress.csv) kept whole when a failed trial is retried.

Tune's JSON and CSV loggers write them in the driver's staging folder, which Tune copies to `--storage` every so
often (with its experiment state). When a failed trial is retried from a checkpoint, the loggers first copy the
storage's version back over the staging one, so the rows reported since Tune's last copy would be lost: the
epochs before the failure, which the report, `--resume` and ExperimentAnalysis read back."""

from __future__ import annotations

from pathlib import Path

import pyarrow.fs
from ray import tune
from ray.tune.result import EXPR_PROGRESS_FILE, EXPR_RESULT_FILE


class KeepLogsOnRetry(tune.Callback):
    """Before a failed trial restarts, its staging log files go to storage, where the loggers read them back."""

    FILES = (EXPR_RESULT_FILE, EXPR_PROGRESS_FILE)

    def on_trial_recover(self, iteration, trials, trial, **info):
        local = pyarrow.fs.LocalFileSystem()
        for name in self.FILES:
            path = Path(trial.local_path, name)
            target = Path(trial.storage.trial_fs_path, name).as_posix()
            if path.exists() and path.as_posix() != target:
                pyarrow.fs.copy_files(path.as_posix(), target, source_filesystem=local,
                                      destination_filesystem=trial.storage.storage_filesystem)
