"""bench/formats.py --memory at a tiny size: both commands measured in fresh processes, ratios derived from the
measured numbers, failures surfaced (no timing or ratio value asserted: the readers are changing under it)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench" / "formats.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_formats", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCH), *args], capture_output=True, text=True, timeout=300,
                          cwd=str(ROOT))


def test_memory_mode_json_has_both_commands_with_ratios_from_the_measured_rss():
    run = run_bench("--memory", "--memory-units", "2000", "--json")
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout)
    baseline = result["baseline"]
    assert baseline["command"] == "validate" and baseline["units"] == 10
    assert baseline["peak_rss_bytes"] > 1_000_000 and baseline["file_bytes"] > 0
    assert result["target_x"] == 5.0
    rows = result["rows"]
    assert sorted(r["command"] for r in rows) == ["pseudo", "validate"]
    for row in rows:
        assert row["units"] == 2000 and row["file_bytes"] > 100_000
        assert row["peak_rss_bytes"] > 0 and row["seconds"] > 0
        assert row["rss_over_file"] == pytest.approx(row["peak_rss_bytes"] / row["file_bytes"], abs=0.01)
        net = (row["peak_rss_bytes"] - baseline["peak_rss_bytes"]) / row["file_bytes"]
        assert row["net_rss_over_file"] == pytest.approx(net, abs=0.01)
        assert row["under_target"] == (row["rss_over_file"] < 5.0)
        assert row["net_under_target"] == (row["net_rss_over_file"] < 5.0)


def test_memory_mode_table_names_the_target_and_each_row():
    run = run_bench("--memory", "--memory-units", "1000")
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.splitlines()
    assert any(line.startswith("baseline (validate on a 10-unit file") for line in lines)
    rows = [line.split() for line in lines if line.strip().startswith("1,000")]
    assert [r[2] for r in rows] == ["validate", "pseudo"]
    for r in rows:
        assert float(r[4]) > 0 and r[5].endswith("x") and r[6].endswith("x") and r[7] in ("yes", "no")
    assert any(line.startswith("target: peak memory under 5x the file size.") and "of 2 rows" in line
               for line in lines)


def test_a_failing_cli_run_raises_instead_of_being_measured(tmp_path):
    bench = load_bench()
    missing = tmp_path / "missing.xlf"
    with pytest.raises(RuntimeError, match=r"validate .*missing\.xlf` exited 1, not 0[\s\S]*no such file"):
        bench.run_cli_measured(["validate", str(missing)], tmp_path / "rss.json")


def test_pseudo_output_check_counts_units_and_targets(tmp_path):
    bench = load_bench()
    src = tmp_path / "src.xlf"
    bench.generate(src, 250)
    assert bench.count_translated_units(src) == (250, 0)  # the generated source has no targets: pseudo must add them


def test_memory_options_are_checked():
    assert run_bench("--json").returncode == 2
    bad = run_bench("--memory", "--memory-units", "10,x")
    assert bad.returncode == 2 and "comma-separated unit counts" in bad.stderr
