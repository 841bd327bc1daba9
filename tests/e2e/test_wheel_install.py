"""A plain ``pip install`` works, from any directory (issue 15, item 1).

The sdist is built from a copy of the checkout (its files that git tracks or would track) and
the wheel from the sdist (``python -m build``, as a release is made), so both must carry the
top-level ``rules/`` and ``playbooks/``. The copy gains a nested ``rules/tests/`` file, as rule
test cases will be: it ships too, and the rule loader (top level only) ignores it. The wheel is
installed into a fresh virtualenv with ``constraints.txt`` (as the Dockerfile does) and its
``medic`` runs ``check``, ``serve`` (until ``/readyz`` answers 200) and ``replay`` with a temp dir
as the working directory and no ``MEDIC_*`` setting pointing back into the checkout.

Like ``make venv``, this needs PyPI or pip's cache (the build backend and the dependencies).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.payloads import alert, payload
from tests.servers.process import ManagedProcess, free_port, http_ok

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
SHIPPED = ("rules", "playbooks")
# the wheel's copy of rules/ and playbooks/ (setup.py maps them there)
WHEEL_PREFIX = "medic/defaults/"


# not a rule: the loader must leave subdirectories alone, the packaging must still ship them
NESTED = "rules/tests/crashloop_test.yaml"
NESTED_TEXT = "# a rule test case, not a rule\ncases:\n  - alert: {alertname: KubePodCrashLooping}\n"


@dataclass(frozen=True)
class Installed:
    source: Path  # the copy of the checkout the sdist was built from
    sdist: Path
    wheel: Path
    venv: Path
    site_packages: Path
    elsewhere: Path  # the working directory of every command: not the checkout

    def medic(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.venv / "bin" / "medic"), *args],
            cwd=self.elsewhere,
            env=clean_env(env or {}),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    """The test process's environment without anything that could point Medic at the checkout
    (or at a cluster): no MEDIC_*, PYTHONPATH, virtualenv or kubeconfig."""
    dropped = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "KUBECONFIG")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDIC_") and k not in dropped}
    return env | {"MEDIC_KUBE_MODE": "off"} | extra


def run(argv: list[str], *, cwd: Path, timeout: float) -> None:
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, f"{' '.join(argv)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


def copy_checkout(dest: Path) -> None:
    """The checkout's files that git tracks or would track (no .venv, caches or build output)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for rel in filter(None, listed.split("\0")):
        if (REPO / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, dest / rel)


def shipped_files(root: Path) -> set[str]:
    """Every file of ``root``'s rules/ and playbooks/, as ``rules/x.yaml`` (hidden ones and
    caches aside: package data globs skip them)."""
    found: set[str] = set()
    for top in SHIPPED:
        for path in (root / top).rglob("*"):
            rel = path.relative_to(root)
            if path.is_file() and not any(p.startswith(".") or p == "__pycache__" for p in rel.parts):
                found.add(rel.as_posix())
    return found


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    tmp = tmp_path_factory.mktemp("wheel-install")
    source, dist, venv, elsewhere = tmp / "source", tmp / "dist", tmp / "venv", tmp / "elsewhere"
    elsewhere.mkdir()
    copy_checkout(source)
    (source / NESTED).parent.mkdir(parents=True, exist_ok=True)
    (source / NESTED).write_text(NESTED_TEXT, encoding="utf-8")
    # sdist from the copy, then the wheel from that sdist
    run([sys.executable, "-m", "build", "--outdir", str(dist), str(source)], cwd=tmp, timeout=300)
    (sdist,) = dist.glob("*.tar.gz")
    (wheel,) = dist.glob("*.whl")
    # a fresh venv without pip; this venv's pip installs into it
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp, timeout=120)
    python = venv / "bin" / "python"
    # --no-compile: byte-compiling kubernetes_asyncio's thousands of modules is not under test
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-compile"]
    run([*pip, "--constraint", str(REPO / "constraints.txt"), str(wheel)], cwd=elsewhere, timeout=600)
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return Installed(source, sdist, wheel, venv, Path(purelib), elsewhere)


def test_wheel_and_sdist_carry_every_rule_and_playbook(installed: Installed) -> None:
    expected = shipped_files(installed.source)
    assert shipped_files(REPO) | {NESTED} == expected
    assert {"rules/kubernetes.yaml", "playbooks/crashloop.yaml", NESTED} <= expected
    with zipfile.ZipFile(installed.wheel) as whl:
        in_wheel = {n.removeprefix(WHEEL_PREFIX) for n in whl.namelist() if n.startswith(WHEEL_PREFIX)}
    assert in_wheel == expected
    with tarfile.open(installed.sdist) as sdist:
        # "playcode_medic-0.1.0/rules/x.yaml" -> "rules/x.yaml"
        members = {m.name.split("/", 1)[1] for m in sdist.getmembers() if m.isfile() and "/" in m.name}
    assert {m for m in members if m.split("/", 1)[0] in SHIPPED} == expected


def test_constraints_pin_exactly_what_the_wheel_needs(installed: Installed) -> None:
    """constraints.txt is complete and current: the image installs it with --no-deps, so a
    dependency missing from it (or a stale one) would only show when the image runs."""
    python = str(installed.venv / "bin" / "python")
    check = subprocess.run(
        [sys.executable, "-m", "pip", "--python", python, "check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    freeze = subprocess.run(
        [sys.executable, "-m", "pip", "--python", python, "freeze", "--exclude", "playcode-medic"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    pinned = (REPO / "constraints.txt").read_text(encoding="utf-8")
    assert requirement_set(freeze) == requirement_set(pinned), (
        "constraints.txt is stale: run `make constraints`"
    )


def requirement_set(text: str) -> set[str]:
    """``name==version`` lines, names normalised (PEP 503), comments dropped."""
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return {re.sub(r"[-_.]+", "-", line.lower()) for line in lines if line}


def test_installed_package_is_the_wheel_not_the_checkout(installed: Installed) -> None:
    out = subprocess.run(
        [str(installed.venv / "bin" / "python"), "-c", "import medic, sys; print(medic.__file__)"],
        cwd=installed.elsewhere,
        env=clean_env({}),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert Path(out.strip()).is_relative_to(installed.site_packages)


def test_medic_check_uses_the_packaged_rules(installed: Installed) -> None:
    proc = installed.medic("check")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    packaged = installed.site_packages / "medic" / "defaults"
    assert (packaged / NESTED).is_file()
    for name in shipped_files(installed.source):
        top, _, rest = name.partition("/")
        if "/" not in rest and rest.endswith((".yaml", ".yml")):  # the loader reads the top level only
            assert str(packaged / top / rest) in proc.stdout, name
    assert NESTED not in proc.stdout + proc.stderr
    assert str(REPO) not in proc.stdout + proc.stderr


async def test_medic_serve_answers_readyz(installed: Installed) -> None:
    data = installed.elsewhere.parent / "serve-data"
    port = free_port()
    server = ManagedProcess(
        "medic-serve",
        [str(installed.venv / "bin" / "medic"), "serve", "--host", "127.0.0.1", "--port", str(port)],
        log_path=installed.elsewhere.parent / "serve.log",
        cwd=installed.elsewhere,
        env=clean_env({"MEDIC_DATA_DIR": str(data)}),
    )
    server.start()
    try:
        await server.wait_ready(lambda: http_ok(f"http://127.0.0.1:{port}/readyz"), within=60)
    finally:
        code = await server.stop(term_timeout=20)
    assert code == 0, server.log_text()
    assert any(data.iterdir()), "the embedded store was not created under MEDIC_DATA_DIR"
    assert not (installed.elsewhere / "data").exists()


def test_medic_replay_runs_a_payload(installed: Installed) -> None:
    body = payload(
        [alert("KubePodCrashLooping", namespace="playcode", pod="api-7d9f8-x2x4q", container="api")]
    )
    (installed.elsewhere / "crashloop.json").write_text(json.dumps(body), encoding="utf-8")
    proc = installed.medic("replay", "crashloop.json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # the incident report: the alert, matched by a rule shipped in the wheel, its playbook run
    assert "KubePodCrashLooping" in proc.stdout
    assert "crashloop-rollback" in proc.stdout and "k8s.pod_logs" in proc.stdout
