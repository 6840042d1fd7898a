"""The sweep through the admission layer: every ci/*-values.yaml scenario,
every launcher, release names of 1 to 53 characters (with and without the
chart name, starting with a digit, long names differing only at the end) and
worker counts from 1 to the schema's maximum either pass what a cluster
checks at admission, or are refused by `helm template` with a message naming
the value. Two releases never render the same object name."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
import yaml

from .admission import admit_all
from .conftest import CHART_DIR, CI_DIR, NAMESPACE, SCENARIOS, helm_template_args

LAUNCHERS = ["job", "jobset", "tfjob"]
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
DEFAULT_VALUES = CI_DIR / "default-values.yaml"


def schema_max_workers() -> int:
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    return schema["properties"]["trainer"]["properties"]["workers"]["maximum"]


MAX_WORKERS = schema_max_workers()
# Every count where a name gains a digit, both ends, and one past the maximum.
WORKER_COUNTS = sorted({n for n in (1, 2, 3, 9, 10, 11, 99, 100, 101, 999, 1000) if n <= MAX_WORKERS}
                       | {MAX_WORKERS, MAX_WORKERS + 1})


def sized(stem: str, length: int) -> str:
    """`stem` repeated or cut to `length` characters, a valid Helm release
    name (no trailing '-')."""
    name = (stem * (length // len(stem) + 1))[:length]
    return name[:-1] + "x" if name.endswith("-") else name


LONGEST_NAME = sized("sweep-lr-0p01-bs-128-", 53)
LONG_PREFIX = sized("sweep-lr-0p01-bs-128-", 41)
RELEASE_NAMES = sorted({
    # without the chart name (the base name is `mnist-train-<release>`, cut above 29 characters,
    # mnist-train.baseNameBudget): short ones, 17 and 18 either side of the cut, and longer ones
    # up to the maximum (past the cut they all share its first 22 characters: more lengths
    # would test the same cut again)
    *(sized("sweep-lr-0p01-bs-128-", n) for n in (1, 2, 5, 10, 17, 18, 20, 30, 41, 52, 53)),
    # with the chart name inside
    "mnist-train", "mnist-train-2", "my-mnist-train", "mnist-train-v2-mnist-train",
    sized("mnist-train-", 40), sized("mnist-train-", 53), "x-" + sized("mnist-train-", 51),
    # starting with a digit; all digits (a YAML number unless quoted)
    "1", "2024", "007", "2024-sweep", sized("2024-sweep-", 53),
    # long names differing only after the 40th character
    LONG_PREFIX + "-seed-1", LONG_PREFIX + "-seed-2",
})


@dataclass
class Outcome:
    release: str
    set_values: tuple
    docs: list | None  # None: refused by helm template
    stderr: str


def render_all(renderer, cases) -> dict:
    """Render (release, set_values) cases two at a time (helm is a
    subprocess; the machine has 2 cores)."""
    def one(case):
        release, set_values = case
        result = renderer.run(*helm_template_args([DEFAULT_VALUES], set_values, release, NAMESPACE))
        docs = None
        if result.returncode == 0:
            # libyaml's loader: the sweep parses ~120 renderings
            docs = [d for d in yaml.load_all(result.stdout, Loader=YAML_LOADER) if d]
        return case, Outcome(release, set_values, docs, result.stderr)
    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(pool.map(one, cases))


@pytest.fixture(scope="module")
def name_sweep(renderer) -> dict:
    """Every release name x launcher, at the most workers the schema allows
    (the longest pod names)."""
    cases = [(name, (f"trainer.launcher={launcher}", f"trainer.workers={MAX_WORKERS}"))
             for name in RELEASE_NAMES for launcher in LAUNCHERS]
    return render_all(renderer, cases)


@pytest.fixture(scope="module")
def worker_sweep(renderer) -> dict:
    """Every worker count x launcher, with the longest release name (without
    the chart name, so the chart may add it); the name sweep covers the
    chart-name cases at the maximum count."""
    cases = [(LONGEST_NAME, (f"trainer.launcher={launcher}", f"trainer.workers={workers}"))
             for launcher in LAUNCHERS for workers in WORKER_COUNTS]
    return render_all(renderer, cases)


def problems(outcome: Outcome, names: list[str]) -> list[str]:
    """What is wrong with one case: the cluster's violations, or a refusal
    that names none of `names`."""
    where = f"release {outcome.release!r} {' '.join(outcome.set_values)}"
    if outcome.docs is not None:
        return [f"{where}: {v}" for v in admit_all(outcome.docs)]
    if any(re.search(re.escape(n), outcome.stderr, re.IGNORECASE) for n in names):
        return []
    return [f"{where}: helm template failed without naming {names}: {outcome.stderr.strip()}"]


def assert_no_problems(found: list[str]):
    assert not found, f"{len(found)} problems:\n" + "\n".join(found[:20])


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario_passes_admission(scenarios, scenario):
    violations = admit_all(scenarios[scenario].docs)
    assert not violations, "\n".join(violations)


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_release_names_pass_admission_or_are_refused(name_sweep, launcher):
    assert_no_problems([p for (release, set_values), outcome in name_sweep.items()
                        if f"trainer.launcher={launcher}" in set_values
                        for p in problems(outcome, [release, "release name", "fullnameOverride"])])


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_worker_counts_pass_admission_or_are_refused(worker_sweep, launcher):
    found = []
    for (release, set_values), outcome in worker_sweep.items():
        if f"trainer.launcher={launcher}" not in set_values:
            continue
        workers = int(set_values[1].split("=")[1])
        if workers > MAX_WORKERS and outcome.docs is not None:
            found.append(f"{workers} workers (schema maximum {MAX_WORKERS}) rendered")
        found += problems(outcome, ["workers", release])
    assert_no_problems(found)


def test_the_sweep_renders_most_cases(name_sweep, worker_sweep):
    """A chart that refused everything would pass the sweeps above: every
    launcher must accept a short and a 53-character release name at the
    schema's maximum of workers."""
    for launcher in LAUNCHERS:
        for release in ("sweep", LONGEST_NAME):
            key = (release, (f"trainer.launcher={launcher}", f"trainer.workers={MAX_WORKERS}"))
            outcome = (name_sweep | worker_sweep).get(key)
            if outcome is None:
                continue
            assert outcome.docs is not None, f"{launcher} refuses release {release!r}:\n{outcome.stderr}"


def object_names(docs: list[dict]) -> set[tuple[str, str]]:
    """Names that share one namespace-wide space per kind; the JobSet's and
    TFJob's child Jobs/pods/Services derive from their own names."""
    return {(d["kind"], d["metadata"]["name"]) for d in docs}


def test_no_two_releases_render_the_same_object_name(name_sweep):
    """Every two release names of the sweep, same launcher: no object of one
    has the name of an object of the other (they would overwrite each other,
    or the second install would fail)."""
    for launcher in LAUNCHERS:
        seen: dict[tuple[str, str], str] = {}
        for (release, set_values), outcome in sorted(name_sweep.items()):
            if f"trainer.launcher={launcher}" not in set_values or outcome.docs is None:
                continue
            for name in object_names(outcome.docs):
                assert name not in seen, (f"{launcher}: releases {seen[name]!r} and {release!r} both "
                                          f"render {name[0]}/{name[1]}")
                seen[name] = release
