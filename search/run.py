"""Run a named hyperparameter search: python search/run.py --space aikd_ablation [--dataset digits] ...

Everything is validated before Ray starts (exit 2 and one line naming the problem, search/plan.py); then the study
runs (search/study.py): Ray starts or is joined, the phase-1 teachers are trained once, Ray Tune runs the trials with
Optuna proposing and ASHA stopping weak ones, MLflow records the study, and a summary ends it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python search/run.py` puts search/ first on sys.path, not the project
    sys.path.insert(0, str(ROOT))

from search.plan import UsageError, build_plan, check_data, parse_args, print_plan, reserve_study_dir  # noqa: E402


def list_spaces() -> None:
    from spaces import get_space, list_spaces
    for name in list_spaces():
        s = get_space(name)
        print(f"{name:18s} {s.searcher:5s} {s.num_samples:3d}  {s.description}")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.list_spaces:
        list_spaces()
        return 0
    try:
        if args.resume:
            from search.resume import args_from_study
            args = args_from_study(args)
        plan = build_plan(args)
        data_note = check_data(plan, args)
        if not args.dry_run:
            reserve_study_dir(plan, args)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print_plan(plan, args)
    print(f"data        {data_note}")
    if args.dry_run:
        print(f"dry run: {plan.num_samples * len(plan.seeds)} training runs planned; nothing started")
        return 0
    from search.study import run_study
    try:
        return run_study(args, plan)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def exit_without_teardown(code: int) -> None:
    """Exit once everything is written, skipping the interpreter's teardown: with Ray, torch and MLflow loaded it
    spends seconds in C-level destructors (no Python frame runs then), after the study has ended and Ray has stopped.
    The atexit handlers still run, and the output is flushed."""
    import atexit
    try:
        atexit._run_exitfuncs()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    exit_without_teardown(main())
