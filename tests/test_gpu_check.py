"""benchmarks/gpu_check.py keeps working without a GPU: `--device cpu --tiny` prints every figure and writes them.

No figure's value is a timing claim here; what is checked is that every item ran (no item error), that every
figure the device run will report has its line and its JSON key, and the few values a CPU run fixes.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SANITY = ("baseline", "aikd_snapshot", "aikd_cache", "frskd", "cskd")
SANITY_KEYS = ("steps", "loss_finite", "loss_last", "syncs_per_step", "images_per_s", "conv_dtype")
CRITIC_KEYS = ("critic_dtypes", "critic_loss_dtype", "gp_dtype")
PACK_KEYS = ("images_per_s", "wall_s", "per_process_images_per_s", "peak_mb", "peak_mb_each", "gpu_util_pct",
             "loss_finite", "threads_per_process")


def expected_figures() -> list[str]:
    names = [f"sanity_{m}_{k}" for m in SANITY for k in SANITY_KEYS]
    names += [f"sanity_{m}_{k}" for m in ("aikd_snapshot", "aikd_cache") for k in CRITIC_KEYS]
    names += ["epoch_images", "epoch_ours_s", "epoch_reference_s", "epoch_ratio", "epoch_goal_met"]
    names += ["step_baseline_ms", "step_aikd_snapshot_ms", "step_aikd_cache_ms"]
    names += [f"step_{m}_{k}" for m in ("aikd_snapshot", "aikd_cache") for k in ("ratio", "goal_met")]
    names += ["pack_steps_per_training"] + [f"pack_k{k}_{key}" for k in (1, 2, 4, 8) for key in PACK_KEYS]
    names += ["pack_ratio_4_vs_1", "pack_goal_met", "pack_best_k", "pack_reason"]
    names += ["probe_images_per_s", "probe_loss_finite", "probe_peak_mb", "probe_peak_reserved_mb", "probe_total_mb",
              "probe_gpu_busy", "probe_k", "probe_fraction", "probe_k_vs_pack_best_k", "rule_k_on_pack_figures"]
    return names + [f"item{i}_seconds" for i in range(1, 6)] + ["total_seconds"]


def test_cpu_tiny_run_prints_and_writes_every_figure(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--device", "cpu", "--tiny"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in proc.stdout.splitlines()
               if line and not line.startswith(("#", " ")) and " " in line}
    figures = json.loads((tmp_path / "gpu_check.json").read_text())["figures"]
    errors = {k: v for k, v in figures.items() if k.endswith("_error")}
    assert not errors, errors
    missing_lines = [n for n in expected_figures() if n not in printed]
    missing_keys = [n for n in expected_figures() if n not in figures]
    assert not missing_lines and not missing_keys, (missing_lines, missing_keys)
    # what a CPU run fixes: every loss finite, the critic in float32, no GPU figure invented
    assert all(figures[n] is True for n in figures if n.endswith("loss_finite"))
    assert figures["sanity_aikd_snapshot_critic_dtypes"] == figures["sanity_aikd_cache_gp_dtype"] == "float32"
    assert printed["sanity_baseline_syncs_per_step"].startswith("n/a")
    assert figures["probe_k"] is None and figures["pack_k4_peak_mb"] is None
    assert figures["pack_best_k"] in (1, 2, 4, 8)
    assert figures["step_aikd_snapshot_ratio"] > 0 and figures["epoch_ratio"] > 0
