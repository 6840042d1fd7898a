"""results.json and the markdown table."""

from __future__ import annotations

import json
from pathlib import Path

from model.atomic_write import write_json_atomically

SECTION_ORDER = ("throughput", "scaling", "accuracy", "resources", "goodput", "scaling_model", "gcs_costs")
QUICK_BANNER = ("**QUICK MODE: a smoke test of the harness with short schedules. These are NOT the "
                "real figures; PASS/MISS below says nothing about the targets.**")


def load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def save_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomically(path, payload, sort_keys=False, default=str)


def _cell(text) -> str:
    return str(text if text is not None else "").replace("|", "\\|").replace("\n", " ")


def markdown(results: dict) -> str:
    m = results["machine"]
    quick = results.get("quick")
    out = [f"# mnist-train benchmark{' (QUICK MODE, not the real figures)' if quick else ''}", ""]
    if quick:
        out += [QUICK_BANNER, ""]
    modified = m.get("model_dir_modified") or []
    out += [
        f"- Machine: {m['cpu_model']} ({', '.join(m.get('cpu_flags') or []) or 'no AVX flags'}), "
        f"{m['cores']} cores ({m['cores_usable']} usable), {m['memory_gb']} GB RAM, Linux {m['kernel']}",
        f"- Software: Python {m['python']}, TensorFlow {m['tensorflow']}, Keras {m['keras']}, "
        f"NumPy {m['numpy']}",
        f"- Date: {m['date']}; git commit {m['commit']}"
        + (f" with uncommitted changes to {', '.join(modified)}" if modified else ""),
        f"- Load average at start: {', '.join(str(x) for x in m['load_average_at_start'])}",
        "",
        "| Figure | Ours | Baseline | Ratio | Target | Status | Notes |",
        "|---|---|---|---|---|---|---|",
    ]
    sections = results.get("sections", {})
    for name in SECTION_ORDER:
        section = sections.get(name)
        if not section:
            continue
        if section.get("error"):
            out.append(f"| {name} | FAILED | | | | MISS | {_cell(section['error'][:300])} |")
            continue
        for row in section["rows"]:
            out.append("| " + " | ".join(_cell(row.get(k)) for k in
                                        ("figure", "value", "baseline", "ratio", "target", "status",
                                         "notes")) + " |")
    out.append("")
    stale = [(n, s) for n, s in sections.items() if s.get("run_id") != results.get("run_id")]
    for name, s in stale:
        out.append(f"- `{name}` was measured in an earlier run ({s.get('measured_at')}, commit "
                   f"{s.get('commit')}); rerun with `--only {name}` to refresh it.")
    for name in SECTION_ORDER:
        s = sections.get(name)
        if s and s.get("method"):
            out.append(f"- **{name}**: {s['method']}")
    out.append("")
    return "\n".join(out)
