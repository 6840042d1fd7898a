"""scripts/ports.py: a port handed out is not handed out again while its caller may still bind it,
to any process (pytest-xdist workers, a test and the local runner it started)."""

from __future__ import annotations

import json
import subprocess
import sys

from scripts import ports
from scripts.paths import REPO_ROOT


def test_a_port_the_kernel_offers_again_is_skipped_in_another_process(monkeypatch, tmp_path):
    """The kernel may offer an unbound port twice; here it is made to (the one fake: the
    coincidence is rare), and the second process, sharing the registry, gets another port."""
    registry = tmp_path / "ports.json"
    monkeypatch.setattr(ports, "REGISTRY", registry)
    (first,) = ports.free_ports(1)
    offers = [[first], *([p] for p in ports._kernel_ports(3))]
    monkeypatch.setattr(ports, "_kernel_ports", lambda count: offers.pop(0)[:count])
    code = ("import sys; from scripts import ports; ports.REGISTRY = type(ports.REGISTRY)(sys.argv[1]);"
            f"ports._kernel_ports = lambda count, offers={offers!r}: offers.pop(0)[:count];"
            "print(ports.free_ports(2))")
    out = subprocess.run([sys.executable, "-c", code, str(registry)], cwd=REPO_ROOT, check=True,
                         capture_output=True, text=True).stdout
    second = json.loads(out)
    assert first not in second and len(set(second)) == 2, (first, second)
    assert set(json.loads(registry.read_text())) == {str(p) for p in [first, *second]}


def test_expired_and_damaged_entries_are_forgotten(monkeypatch, tmp_path):
    registry = tmp_path / "ports.json"
    monkeypatch.setattr(ports, "REGISTRY", registry)
    registry.write_text(json.dumps({"1": 0.0}))
    ports.free_ports(1)
    assert "1" not in json.loads(registry.read_text())
    registry.write_text("{ damaged")
    assert len(ports.free_ports(2)) == 2
    assert len(json.loads(registry.read_text())) == 2
