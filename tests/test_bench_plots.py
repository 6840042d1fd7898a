"""bench/plots.py: the PNG figures drawn from a small results.json of the shape bench/run.py writes
(scaling rows with a tf_keras anchor, accuracy runs with their evaluator lines, a goodput section),
and each plot skipped cleanly when its section is missing. Drawn as `make bench` draws them: by
`python -m bench.plots` in the tools' virtualenv, where matplotlib is (requirements-tools.txt)."""

from __future__ import annotations

import json
import struct
import subprocess


from scripts.paths import REPO_ROOT

from scripts.paths import TOOLS_PYTHON
from tests.requirements import unavailable


def draw(results) -> subprocess.CompletedProcess:
    """`python -m bench.plots --results FILE` with the tools' virtualenv, as `make bench` runs it."""
    if not TOOLS_PYTHON.exists():
        unavailable(f"{TOOLS_PYTHON} is missing: `make tools` builds it (matplotlib for bench/plots.py)")
    return subprocess.run([str(TOOLS_PYTHON), "-m", "bench.plots", "--results", str(results)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)


def scaling_row(row_id: str, batch: int, efficiency: float, dtype="float32", exchange="auto") -> dict:
    return {"id": row_id, "value": f"{efficiency:.2f}", "status": "info",
            "numbers": {"one": 1000.0, "two": 2000.0 * efficiency, "efficiency": efficiency, "batch": batch,
                        "dtype": dtype, "exchange": exchange}}


def goodput_row(label: str, goodput: float, shares: dict) -> dict:
    return {"id": f"goodput.{label}", "value": f"{goodput:.3f}",
            "numbers": {"goodput": goodput, "badput_shares": shares,
                        "badput_secs": {k: v * 400 for k, v in shares.items()}}}


RESULTS = {
    "run_id": "fixture", "quick": False,
    "sections": {
        "scaling": {"rows": [
            scaling_row("scaling.mlp", 100, 0.42), scaling_row("scaling.mlp.batch1000", 1000, 0.79),
            scaling_row("scaling.mlp.batch100-all-reduce", 100, 0.39, exchange="all-reduce"),
            scaling_row("scaling.lenet5", 100, 0.86), scaling_row("scaling.lenet5.batch400", 400, 0.95),
            scaling_row("scaling.lenet5.batch100-bfloat16", 100, 0.85, dtype="bfloat16"),
            scaling_row("scaling.lenet5.tf_keras", 100, 0.66),
            {"id": "scaling.note", "value": "text only"},  # a row without numbers is ignored
        ]},
        "accuracy": {"details": {
            "mlp": {"evaluator_alongside": False, "max_steps": 30000,
                    "evals": [{"t": 90.0, "step": 30000, "validation_accuracy": 0.989}]},
            "lenet5": {"evaluator_alongside": True, "max_steps": 8000,
                       "time_to_99": {"seconds": 74.3, "step": 1000},
                       "evals": [{"t": 25.6, "step": 250, "validation_accuracy": 0.9832},
                                 {"t": 74.3, "step": 1000, "validation_accuracy": 0.9904},
                                 {"t": 400.0, "step": 8000, "validation_accuracy": 0.9938}]},
        }},
        "goodput": {"rows": [
            goodput_row("clean", 0.91, {"startup": 0.05, "checkpoint_save": 0.04}),
            goodput_row("sigkill", 0.78, {"startup": 0.08, "recompute": 0.09, "restart": 0.05}),
            {"id": "goodput.clean_eval_lag", "numbers": {"median_secs": 3.0}},
        ], "details": {"runs": {"clean": {"goodput": {"wall_secs": 412.0}}}}},
    },
}


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def test_every_plot_is_drawn_from_a_full_results_file(tmp_path):
    results = tmp_path / "results.json"
    results.write_text(json.dumps(RESULTS))
    out = draw(results)
    assert out.returncode == 0, out.stdout + out.stderr
    drawn = sorted(p.stem for p in tmp_path.glob("*.png"))
    assert drawn == ["accuracy_vs_time", "goodput", "scaling"], out.stdout
    for name in drawn:
        width, height = png_size(tmp_path / f"{name}.png")
        assert width >= 600 and height >= 150, (name, width, height)
    assert not list(tmp_path.glob("*.tmp"))


def test_missing_sections_are_skipped_and_a_quick_run_gets_its_own_files(tmp_path, capsys):
    """`python -m bench.plots --results FILE` as a user runs it: no goodput or accuracy section
    (another branch's section, or a run with --only scaling) skips those plots, says so, exits 0."""
    sections = {"scaling": RESULTS["sections"]["scaling"], "accuracy": {"rows": [], "error": "failed"}}
    results = tmp_path / "results-quick.json"
    results.write_text(json.dumps({"quick": True, "sections": sections}))
    out = draw(results)
    assert out.returncode == 0, out.stdout + out.stderr
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["quick-scaling.png"]
    assert "goodput: skipped (no goodput section)" in out.stdout, out.stdout
    assert "accuracy_vs_time: skipped" in out.stdout, out.stdout


def test_a_missing_results_file_is_a_clear_error(tmp_path):
    out = draw(tmp_path / "results.json")
    assert out.returncode != 0, out.stdout
    assert "results.json is missing or not JSON" in out.stderr, out.stderr
