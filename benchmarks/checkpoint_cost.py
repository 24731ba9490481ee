"""What a checkpoint costs the epoch it follows: resnet18 on digits, one thread (as a 1-CPU trial), baseline method.

Two ways, on the same Trainer:
- before issue 19 (still what a Ray that lacks the internals trainables/checkpoints.py checks for gets):
  `Trainer.state()` (a deep copy), `torch.save` into a temporary folder, then Ray's copy of that folder into the
  study's trial folder (`ray.train._internal.storage._pyarrow_fs_copy_files`, what `report` calls), all on the
  training thread;
- now (trainables/checkpoints.py): `Trainer.state(host=True)` on the training thread, then `write_payload` straight
  into the trial folder from a background thread while the next epoch trains.

Each round: an epoch with no write in flight (plain); a checkpoint the new way and the next epoch with its write
running (overlapped); a checkpoint the old way. The new way's cost to the training thread is the snapshot plus the
slowing of the next epoch (the median of the rounds' paired differences, capped at the write's own time: the write
runs on another core); the old way's is all of its time. Medians over rounds, also as a share of a plain epoch:
`--checkpoint-every`'s default is read from them (README).

    PYTHONPATH=. python benchmarks/checkpoint_cost.py [--model resnet18] [--rounds 3] [--threads 1] [--max-load 1.5]

Last line: `checkpoint_cost per_checkpoint_s=X.XXX share=Y.Y% before_s=Z.ZZZ`
"""

from __future__ import annotations

import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import torch
from _common import CLEAN_DIGITS, arg_parser, header, load1, median, scratch_folder, wait_for_quiet

from aikd.config import TrainConfig
from aikd.train import Trainer
from trainables.checkpoints import STATE_FILE, checkpoint_payload, write_payload


def old_checkpoint(trainer, study: str | os.PathLike, index: int) -> float:
    import pyarrow.fs
    from ray.train._internal.storage import _pyarrow_fs_copy_files
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        torch.save(checkpoint_payload([trainer], [1]), os.path.join(d, STATE_FILE))
        dest = os.path.join(study, f"old_{index:06d}")
        fs = pyarrow.fs.LocalFileSystem()
        fs.create_dir(dest)
        _pyarrow_fs_copy_files(d, dest, source_filesystem=fs, destination_filesystem=fs)
    return time.perf_counter() - t0


def main(argv=None) -> None:
    p = arg_parser(__doc__)
    p.add_argument("--model", default="resnet18")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    header("checkpoint_cost")
    cfg = TrainConfig.from_dict({"data.dataset": "digits", **CLEAN_DIGITS,
                                 "model.name": args.model, "method.name": "baseline",
                                 "epochs": 2 * args.rounds + 1}).resolved()
    trainer = Trainer(cfg)
    size = sum(t.numel() * t.element_size() for t in trainer.model.state_dict().values())
    print(f"{args.model} on digits, {args.threads} thread(s); weights {size / 1e6:.0f} MB (+ SGD momentum)")
    wait_for_quiet(args.max_load, tries=3)
    load = load1()
    trainer.train_epoch()  # warm-up
    plain, overlapped, snapshot, write, old = [], [], [], [], []
    with scratch_folder("aikd_ckpt_cost_") as study, ThreadPoolExecutor(1) as pool:
        for r in range(args.rounds):
            plain.append(trainer.train_epoch()["epoch_seconds"])
            t0 = time.perf_counter()
            payload = checkpoint_payload([trainer], [1], host=True)
            snapshot.append(time.perf_counter() - t0)

            def timed_write(payload=payload, r=r):
                t = time.perf_counter()
                write_payload(payload, os.path.join(study, f"checkpoint_{r:06d}"))
                return time.perf_counter() - t
            pending = pool.submit(timed_write)
            del payload
            overlapped.append(trainer.train_epoch()["epoch_seconds"])
            write.append(pending.result())
            old.append(old_checkpoint(trainer, study, r))
            print(f"round {r + 1}: plain epoch {plain[-1]:.2f}s, overlapped {overlapped[-1]:.2f}s; snapshot "
                  f"{snapshot[-1]:.3f}s, background write {write[-1]:.3f}s; old way {old[-1]:.3f}s", flush=True)
    epoch = median(plain)
    slower = median([o - q for o, q in zip(overlapped, plain)])  # paired by round: drift between rounds cancels
    # the write runs on another core, so it can slow the next epoch by at most its own time; a larger median
    # difference is the epochs' own spread (printed per round above)
    cost = median(snapshot) + min(max(0.0, slower), median(write))
    print(f"plain epoch {epoch:.2f}s; checkpoint now: snapshot {median(snapshot):.3f}s, next epoch {slower:+.3f}s "
          f"(median of the rounds' differences) with the write ({median(write):.3f}s) in the background; before: "
          f"{median(old):.3f}s on the training thread; load {load:.2f} -> {load1():.2f}")
    print(f"checkpoint_cost per_checkpoint_s={cost:.3f} share={100 * cost / epoch:.1f}% before_s={median(old):.3f}")

if __name__ == "__main__":
    main()
