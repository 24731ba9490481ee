"""Phase-1 teacher store: one CE baseline S_sup per (dataset, split, model, recipe, seed), trained once.

Concurrent callers (trials, Ray tasks, processes) serialise on a file lock: the first trains, the others wait
and load. This module only stores; training one is `aikd.train.get_or_train_teacher`, the caller's step before `fit`
(so the store does not depend on the trainer that depends on it). A checksum beside the weights makes a truncated
or corrupt file get retrained, never loaded. Keys, paths and checksums need no torch: a study's driver finds its
cached teachers without importing it (seconds); only loading and saving weights import torch and the models.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from filelock import FileLock

# Keys that do not change the trained weights, so they stay out of the store key.
_IRRELEVANT = ("device", "data.root", "data.download", "data.num_workers", "data.eval_batch_size", "teacher.",
               "metrics.", "debug.", "method.", "critic.")


def teacher_root(cfg) -> Path:
    root = cfg.teacher.root or os.environ.get("AIKD_TEACHERS") or Path.home() / ".cache" / "aikd" / "teachers"
    return Path(root)


def teacher_key(cfg) -> str:
    tc = cfg.teacher_config().to_dict()
    kept = {k: v for k, v in sorted(tc.items()) if not any(k == p or k.startswith(p) for p in _IRRELEVANT)}
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:20]


def teacher_path(cfg) -> Path:
    tc = cfg.teacher_config()
    return teacher_root(cfg) / f"{tc.data.dataset}-{tc.model.name}-s{tc.seed}-{teacher_key(cfg)}.pt"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_teacher(cfg):
    """The stored S_sup for `cfg` if its file matches the recorded checksum, else None (missing, truncated, corrupt)."""
    import torch

    from aikd.models import build_model
    path = teacher_path(cfg)
    meta_path = path.with_suffix(".json")
    if not path.exists() or not meta_path.exists():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        if meta.get("sha256") != _sha256(path):
            return None
        model = build_model(cfg.teacher_config(), meta["num_classes"])
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return model
    except (OSError, ValueError, KeyError, RuntimeError, EOFError):
        return None


def teacher_is_cached(cfg) -> bool:
    """A valid copy is in the store (checksum checked, nothing loaded): callers that would start a process only to
    find the file can skip it."""
    path = teacher_path(cfg)
    try:
        return json.loads(path.with_suffix(".json").read_text()).get("sha256") == _sha256(path)
    except (OSError, ValueError):
        return False


def teacher_lock(cfg) -> FileLock:
    """The lock that makes one caller train a missing teacher while the others wait, then load its file."""
    path = teacher_path(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path) + ".lock")


def save_teacher(cfg, model, metrics: dict) -> Path:
    """Write S_sup's weights, then their checksum and recipe; each file appears whole (written aside, then renamed)."""
    import torch
    path = teacher_path(cfg)
    tc = cfg.teacher_config()
    model = model.cpu()
    tmp = path.with_suffix(".pt.tmp")
    torch.save(model.state_dict(), tmp)
    digest = _sha256(tmp)
    os.replace(tmp, path)
    num_classes = next(reversed(model.state_dict().values())).shape[0]
    meta = {"sha256": digest, "num_classes": int(num_classes), "config": tc.to_dict(), "metrics": metrics}
    meta_tmp = path.with_suffix(".json.tmp")
    meta_tmp.write_text(json.dumps(meta, indent=1, sort_keys=True))
    os.replace(meta_tmp, path.with_suffix(".json"))
    return path
