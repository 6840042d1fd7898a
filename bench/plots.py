"""The benchmark's figures as PNG plots beside results.json (matplotlib).

    .venv-tools/bin/python -m bench.plots                 # re-render from bench/results/results.json
    .venv-tools/bin/python -m bench.plots --results FILE  # another results file; the PNGs go beside it

matplotlib lives in the tools' virtualenv (requirements-tools.txt, `make tools`), not in the
training one: Keras imports matplotlib.pyplot whenever it is installed, which every TensorFlow
process would pay for. This module imports nothing of TensorFlow's. `make bench` runs it at its
end. Each plot is drawn from the sections that are in the file and skipped (with a line saying
why) when its section is absent or empty:

- scaling.png: 2-worker scaling efficiency against the per-worker batch, one line per network
  (float32, the default gradient exchange), the other exchange/dtype variants as open markers,
  the ideal (1.0) and the target line, and a tf_keras MultiWorkerMirroredStrategy anchor where a
  scaling row's id names keras;
- accuracy_vs_time.png: validation accuracy against wall time since the trainer started, for
  each accuracy run whose evaluator ran alongside the trainer;
- goodput.png: where a run's wall time went (productive share and each badput cause), one bar
  per goodput run, when results.json has a `goodput` section (bench/goodput.py).

A quick run's file (results-quick.json) gives quick-*.png, so it never replaces the real figures.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench import report
from bench.sections import NAMES
from scripts.paths import REPO_ROOT

RESULTS_JSON = REPO_ROOT / "bench" / "results" / "results.json"
DPI = 110
COLOURS = {"mlp": "tab:blue", "lenet5": "tab:orange"}
TARGET_EFFICIENCY = 0.85  # the 2-worker target (bench/README.md)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    return plt


def _rows(results: dict, section: str) -> list[dict]:
    return [r for r in (results.get("sections", {}).get(section) or {}).get("rows", [])
            if isinstance(r.get("numbers"), dict)]


def _network(row_id: str) -> str:
    return row_id.split(".")[1] if row_id.count(".") >= 1 else row_id


def plot_scaling(results: dict, path: Path) -> str | None:
    rows = [r for r in _rows(results, "scaling") if "efficiency" in r["numbers"] and "batch" in r["numbers"]]
    if not rows:
        return "no scaling rows"
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    batches = sorted({r["numbers"]["batch"] for r in rows})
    for network in sorted({_network(r["id"]) for r in rows}, key=lambda n: list(NAMES).index(n)
                          if n in NAMES else 99):
        mine = [r for r in rows if _network(r["id"]) == network and "keras" not in r["id"]]
        main = sorted((r["numbers"]["batch"], r["numbers"]["efficiency"]) for r in mine
                      if r["numbers"].get("dtype", "float32") == "float32"
                      and r["numbers"].get("exchange", "auto") == "auto")
        colour = COLOURS.get(network)
        name = NAMES.get(network, network)
        if main:
            ax.plot(*zip(*main), "o-", color=colour, label=f"{name} (float32, exchange auto)")
            for batch, eff in main:
                ax.annotate(f"{eff:.2f}", (batch, eff), textcoords="offset points", xytext=(6, -12),
                            fontsize=8, color=colour)
        for r in mine:
            n = r["numbers"]
            if (n.get("dtype", "float32"), n.get("exchange", "auto")) != ("float32", "auto"):
                variant = "bfloat16 wire" if n.get("dtype") == "bfloat16" else f"{n.get('exchange')}"
                marker = "s" if n.get("dtype") == "bfloat16" else "^"
                ax.plot(n["batch"], n["efficiency"], marker, mfc="none", color=colour,
                        label=f"{name}, {variant}")
    for r in rows:
        if "keras" in r["id"]:
            n = r["numbers"]
            ax.plot(n["batch"], n["efficiency"], "*", ms=13, color="tab:green",
                    label=f"tf_keras anchor ({NAMES.get(_network(r['id']), _network(r['id']))})")
    ax.axhline(1.0, color="grey", ls="--", lw=1, label="ideal (2x one worker)")
    ax.axhline(TARGET_EFFICIENCY, color="tab:red", ls=":", lw=1, label=f"target {TARGET_EFFICIENCY:.2f}")
    ax.set_xscale("log", base=2)
    ax.set_xlim(min(batches) / 1.3, max(batches) * 1.5)  # room for the labels at both ends
    ax.set_xticks(batches, [str(b) for b in batches])
    ax.set_ylim(0, 1.08)
    ax.set_xlabel("per-worker batch (images per worker per step)")
    ax.set_ylabel("scaling efficiency\n2-worker img/s ÷ (2 × 1-worker img/s)")
    ax.set_title("2 workers × 1 core vs 1 worker × 1 core")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    _save(fig, path)
    return None


def plot_accuracy(results: dict, path: Path) -> str | None:
    details = (results.get("sections", {}).get("accuracy") or {}).get("details") or {}
    runs = {name: d for name, d in details.items()
            if isinstance(d, dict) and d.get("evals") and d.get("evaluator_alongside", True)}
    if not runs:
        return "no accuracy run with the evaluator alongside"
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    variant_colours = iter(["tab:purple", "tab:brown", "tab:pink", "tab:olive"])
    for i, (name, d) in enumerate(runs.items()):
        evals = sorted((e["t"], 100 * e["validation_accuracy"]) for e in d["evals"])
        network, _, variant = name.partition("-")
        short = NAMES.get(network, network) + (f" {variant}" if variant else "")
        colour = next(variant_colours) if variant else COLOURS.get(network)
        ax.plot(*zip(*evals), ".-", label=f"{short}, {d.get('max_steps', '?')} steps", color=colour)
        reached = d.get("time_to_99")
        if reached:
            ax.annotate(f"{short}: 99% at {reached['seconds']:.0f} s", (reached["seconds"], 99.0),
                        textcoords="offset points", xytext=(25, -22 - 16 * i), fontsize=8, color=colour,
                        arrowprops=dict(arrowstyle="->", lw=0.6, color=colour))
    ax.axhline(99.0, color="grey", ls="--", lw=1)
    ax.set_ylim(bottom=max(90.0, ax.get_ylim()[0]))
    ax.set_xlabel("wall time since the trainer started (s)")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title("Validation accuracy as the evaluator printed it (moving-average weights)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    _save(fig, path)
    return None


def plot_goodput(results: dict, path: Path) -> str | None:
    rows = [r for r in _rows(results, "goodput") if "badput_shares" in r["numbers"]
            and r["numbers"].get("goodput") is not None]
    if not rows:
        return "no goodput section"
    runs = ((results["sections"]["goodput"].get("details") or {}).get("runs") or {})
    plt = _pyplot()
    causes = sorted({c for r in rows for c, share in r["numbers"]["badput_shares"].items() if share >= 0.001},
                    key=lambda c: -max(r["numbers"]["badput_shares"].get(c, 0) for r in rows))
    colours = plt.get_cmap("tab10").colors
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.7 * len(rows)))
    labels = []
    for i, r in enumerate(rows):
        label = r["id"].split(".", 1)[1]
        wall = ((runs.get(label) or {}).get("goodput") or {}).get("wall_secs")
        labels.append(f"{label}\n({wall:.0f} s)" if wall else label)
        left = r["numbers"]["goodput"]
        ax.barh(i, left, color="tab:green", label="productive" if i == 0 else None)
        ax.text(left / 2, i, f"{left:.1%}", ha="center", va="center", color="white", fontsize=8)
        for j, cause in enumerate(causes):
            share = r["numbers"]["badput_shares"].get(cause, 0.0)
            ax.barh(i, share, left=left, color=colours[(j + 3) % len(colours)],
                    label=cause if i == 0 else None)
            left += share
    ax.set_yticks(range(len(rows)), labels)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda x, _: f"{x:.0%}"))
    ax.set_xlabel("share of the run's wall time")
    ax.set_title("Where a LeNet-5 run's wall time goes (goodput and badput)")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.35 if len(rows) < 3 else -0.2),
              ncol=min(5, len(causes) + 1), frameon=False)
    _save(fig, path)
    return None


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp")
    fig.savefig(tmp, dpi=DPI, format="png")
    tmp.replace(path)  # a reader never sees half a PNG
    fig.clf()
    import matplotlib.pyplot as plt

    plt.close(fig)


PLOTS = {"scaling": plot_scaling, "accuracy_vs_time": plot_accuracy, "goodput": plot_goodput}


def render(results_path: Path) -> dict[str, Path]:
    """Draw every plot the file has data for beside it; {name: PNG path} of those drawn."""
    results = report.load(results_path)
    if results is None:
        raise SystemExit(f"plots: {results_path} is missing or not JSON (run `make bench` first)")
    prefix = "quick-" if results.get("quick") else ""
    drawn = {}
    for name, plot in PLOTS.items():
        path = results_path.parent / f"{prefix}{name}.png"
        skipped = plot(results, path)
        if skipped:
            print(f"plots | {name}: skipped ({skipped})", flush=True)
        else:
            drawn[name] = path
            print(f"plots | wrote {_shown(path)}", flush=True)
    return drawn


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.plots", description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=RESULTS_JSON,
                        help="results file to draw (default: %(default)s); the PNGs go beside it")
    render(parser.parse_args(argv).results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
