"""Rootless mode (userns.py): which setting the error names when user namespaces are unavailable,
and the real probe on this machine.

The message selection reads a fake /proc/sys directory (userns.explain's `proc_sys`): the real
sysctls cannot be changed here without breaking every other user of this machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.local_runner import userns
from tests.e2e.conftest import REPO_ROOT
from tests.requirements import unavailable


def fake_proc_sys(tmp_path: Path, **values: int) -> Path:
    """A /proc/sys with only the given sysctls (name with `__` for `/`)."""
    root = tmp_path / "sys"
    (root / "user").mkdir(parents=True)
    (root / "kernel").mkdir()
    for name, value in values.items():
        (root / name.replace("__", "/")).write_text(f"{value}\n")
    return root


@pytest.mark.parametrize("values,names", [
    ({"user__max_user_namespaces": 0}, "user.max_user_namespaces"),
    ({"user__max_user_namespaces": 15000, "kernel__unprivileged_userns_clone": 0},
     "kernel.unprivileged_userns_clone"),
    ({"user__max_user_namespaces": 15000, "kernel__apparmor_restrict_unprivileged_userns": 1},
     "kernel.apparmor_restrict_unprivileged_userns"),
])
def test_the_message_names_the_setting_that_forbids_user_namespaces(tmp_path, values, names):
    message = userns.explain("unshare: unshare failed: Operation not permitted",
                             fake_proc_sys(tmp_path, **values))
    assert names in message and f"sudo sysctl -w {names}=" in message, message
    assert "Operation not permitted" in message  # the probe's own error, too
    others = {"user.max_user_namespaces", "kernel.unprivileged_userns_clone",
              "kernel.apparmor_restrict_unprivileged_userns"} - {names}
    assert not [o for o in others if o in message], message


def test_without_a_forbidding_sysctl_the_message_says_so(tmp_path):
    message = userns.explain("Operation not permitted", fake_proc_sys(
        tmp_path, user__max_user_namespaces=15000, kernel__unprivileged_userns_clone=1,
        kernel__apparmor_restrict_unprivileged_userns=0))
    assert "No sysctl forbids them" in message and "as root" in message, message


def test_missing_tools_are_named_with_their_packages_before_any_probe(tmp_path):
    def which(tool):
        return None if tool in ("ip", "nsenter") else f"/usr/bin/{tool}"

    def never():
        raise AssertionError("probed although tools are missing")

    reason = userns.unavailable_reason(fake_proc_sys(tmp_path), which=which, try_it=never)
    assert reason == ("missing tools: ip, nsenter (install the Debian/Ubuntu package(s) "
                      "iproute2, util-linux)")


def test_a_failed_probe_is_explained_and_a_working_one_is_not(tmp_path):
    proc_sys = fake_proc_sys(tmp_path, user__max_user_namespaces=0)
    assert "user.max_user_namespaces is 0" in userns.unavailable_reason(proc_sys, try_it=lambda: "EPERM")
    assert userns.unavailable_reason(proc_sys, try_it=lambda: None) is None


def test_the_real_probe_on_this_machine():
    """This machine allows unprivileged user namespaces (the runner's own tests need them as a
    normal user): the probe succeeds; and as a normal user with max_user_namespaces forced to 0
    inside a user namespace, the real `unshare` fails and the message names the setting."""
    error = userns.probe()
    if error:
        unavailable(f"user namespaces unavailable here: {userns.explain(error)}")
    assert userns.unavailable_reason() is None
    # Inside a user namespace its own user.max_user_namespaces can be set to 0: a real refusal.
    code = ("import sys; from scripts.local_runner import userns; "
            "open('/proc/sys/user/max_user_namespaces', 'w').write('0'); "
            "print(userns.unavailable_reason())")
    result = subprocess.run(["unshare", "--user", "--map-root-user", "--", sys.executable, "-c", code],
                            capture_output=True, text=True, cwd=REPO_ROOT,
                            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "user.max_user_namespaces is 0" in result.stdout, result.stdout
