"""The Dockerfile, read statically (no Docker engine on this machine; issue 15, item 9).

* The base image is pinned by digest (every stage), so a rebuild starts from the same bytes.
* Dependencies come from constraints.txt in their own layer, before the sources are copied, and
  the project is installed with ``--no-deps`` + ``pip check``: nothing unpinned gets in.
* No pip is left in the final image: the venv loses it in the build stage, the base's own pip is
  uninstalled in the runtime stage, and nothing is pip-installed there.
* OCI labels (version, revision, source) come from build args; the version's default is the
  package's.
* Multi-stage, non-root, and the entrypoint, port and probes the chart expects.

tests/e2e/test_wheel_install.py runs the same install (wheel + constraints.txt) for real.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.version import Version

from medic.telemetry.build import REVISION_FILE
from tests.integration.helm_image import Instruction, Stage, dockerignore_excludes, parse_dockerfile

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"

BUILD_CONSTRAINTS = REPO / "build-constraints.txt"
BUILD_CONSTRAINTS_IN_IMAGE = "/tmp/build-constraints.txt"
DIGEST_PINNED = re.compile(r"^[\w.\-/]+:[\w.\-]+@sha256:[0-9a-f]{64}$")
OCI = "org.opencontainers.image."


def stages() -> dict[str, Stage]:
    """The stages by name: deps (pinned dependencies), build (Medic), runtime (the image)."""
    df = parse_dockerfile(DOCKERFILE)
    named = {s.name: s for s in df.stages if s.name}
    assert list(named) == ["deps", "build", "runtime"] and df.stages[-1].name == "runtime"
    return named


def runs(stage: Stage) -> list[str]:
    return [i.args for i in stage.all("RUN")]


def index_of(stage: Stage, keyword: str, needle: str) -> int:
    for n, ins in enumerate(stage.instructions):
        if ins.keyword == keyword and needle in ins.args:
            return n
    raise AssertionError(f"no {keyword} with {needle!r} in stage {stage.name}")


def commands(run: str) -> list[list[str]]:
    """The commands of a RUN line, split at ``&&``."""
    return [shlex.split(part) for part in run.split("&&")]


def pip_commands(stage: Stage) -> list[list[str]]:
    """Every pip invocation of a stage, as its arguments after ``pip``."""
    out = []
    for run in runs(stage):
        for cmd in commands(run):
            if cmd[:3] == ["python", "-m", "pip"]:
                out.append(cmd[3:])
            elif cmd and cmd[0].rsplit("/", 1)[-1] in ("pip", "pip3"):
                out.append(cmd[1:])
    return out


def key_values(ins: Instruction) -> dict[str, str]:
    out: dict[str, str] = {}
    for token in shlex.split(ins.args):
        key, sep, value = token.partition("=")
        assert sep, f"{ins.keyword} must use key=value: {ins.args!r}"
        out[key] = value
    return out


def test_base_image_is_pinned_by_digest() -> None:
    df = parse_dockerfile(DOCKERFILE)
    default = df.args.get("PYTHON_IMAGE", "")
    assert DIGEST_PINNED.match(default), f"PYTHON_IMAGE must be name:tag@sha256:<digest>, not {default!r}"
    assert default.startswith("python:3.11")
    names = {s.name for s in df.stages if s.name}
    for stage in df.stages:
        assert stage.base in names or DIGEST_PINNED.match(stage.base), stage.base


def test_dependencies_are_installed_from_constraints_in_their_own_layer() -> None:
    named = stages()
    deps, build = named["deps"], named["build"]
    # the deps stage sees constraints.txt only, so a code change reuses its layer
    assert [i.args.split()[0] for i in deps.all("COPY") + deps.all("ADD")] == ["constraints.txt"]
    install_deps = index_of(deps, "RUN", "constraints.txt")
    assert index_of(deps, "COPY", "constraints.txt") < install_deps
    line = deps.instructions[install_deps].args
    assert "--no-deps" in line and re.search(r"(--requirement|-r)[ =]\S*constraints\.txt", line)
    # Medic is built on top of it, with no dependency resolution of its own, and the pinned set
    # is proven complete
    assert build.base == "deps"
    installs = [c for c in pip_commands(build) if c[:1] == ["install"] or c[2:3] == ["install"]]
    assert installs and all("--no-deps" in c for c in installs), installs
    assert any(c[-1:] == ["check"] for c in pip_commands(build)), "pip check after installing"


def is_build_backend_install(cmd: list[str]) -> bool:
    """The build stage's install of the pinned build backend into that stage's own Python."""
    return cmd[:1] == ["install"] and cmd[-2:] == ["--requirement", BUILD_CONSTRAINTS_IN_IMAGE]


def test_no_pip_is_left_in_the_final_image() -> None:
    named = stages()
    deps, build, final = named["deps"], named["build"], named["runtime"]
    # the venv never gets a pip of its own: the base image's pip installs into it (--python)
    assert "python -m venv --without-pip /opt/medic" in " ".join(runs(deps))
    for stage in (deps, build):
        for cmd in pip_commands(stage):
            assert "pip" not in cmd[1:] and "setuptools" not in cmd[1:], cmd
            if "install" in cmd and not (stage is build and is_build_backend_install(cmd)):
                assert cmd[:2] == ["--python", "/opt/medic/bin/python"], cmd
        assert "ensurepip" not in " ".join(runs(stage))
    # the runtime stage: the base image's pip removed, nothing pip-installed
    final_runs = " && ".join(runs(final))
    assert "pip install" not in final_runs and "ensurepip/_bundled" in final_runs
    removal = [c for c in pip_commands(final) if c[:1] == ["uninstall"]]
    assert removal and {"pip", "setuptools", "wheel"} <= set(removal[0])
    # from the other stages it takes the venv and Medic, as two layers, nothing else
    copies = [(i.flags["from"], i.args) for i in final.all("COPY") if i.flags.get("from")]
    assert copies == [("deps", "/opt/medic /opt/medic"), ("build", "/opt/medic-app /opt/medic-app")]
    assert "/opt/medic-app/bin" in final.env()["PATH"].split(":")


def test_oci_labels_come_from_build_args() -> None:
    final = stages()["runtime"]
    labels: dict[str, str] = {}
    for label in final.all("LABEL"):
        labels |= key_values(label)
    args = {k: v for i in final.all("ARG") for k, _, v in [i.args.partition("=")]}
    for field, arg in (("version", "VERSION"), ("revision", "REVISION"), ("source", "SOURCE")):
        assert labels.get(OCI + field) == "${" + arg + "}", field
        assert arg in args, f"ARG {arg} must be declared in the runtime stage"
        assert index_of(final, "ARG", arg) < index_of(final, "LABEL", OCI + field)
    assert labels[OCI + "title"] == "playcode-medic"
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    chart = yaml.safe_load((REPO / "helm" / "playcode-medic" / "Chart.yaml").read_text(encoding="utf-8"))
    assert args["VERSION"] == project["version"] == chart["appVersion"]
    assert labels[OCI + "licenses"] == project["license"]
    # a build that passes only REVISION (the README's) still names the repository
    assert args["SOURCE"].strip('"') == repository_url()


def repository_url() -> str:
    """The project's repository: the single ``sources`` entry of Chart.yaml, which the chart's
    runbook links (``prometheusRule.runbookBaseUrl``) point into too."""
    chart_dir = REPO / "helm" / "playcode-medic"
    chart = yaml.safe_load((chart_dir / "Chart.yaml").read_text(encoding="utf-8"))
    (source,) = chart.get("sources") or [""]
    assert source.startswith("https://") and not source.endswith("/"), source
    values = yaml.safe_load((chart_dir / "values.yaml").read_text(encoding="utf-8"))
    base: str = values["prometheusRule"]["runbookBaseUrl"]
    assert base.split("/blob/")[0] == source, f"runbookBaseUrl {base} is not under {source}"
    return str(source)


def test_the_build_backend_is_pinned() -> None:
    """The wheel is built with the setuptools of build-constraints.txt, never one pip fetches."""
    build = stages()["build"]
    pins = [
        line.split("#")[0].strip()
        for line in BUILD_CONSTRAINTS.read_text(encoding="utf-8").splitlines()
        if line.split("#")[0].strip()
    ]
    assert pins and all(re.fullmatch(r"[A-Za-z0-9_.\-]+==[0-9][\w.]*", p) for p in pins), pins
    pinned = {Requirement(p).name: Version(p.split("==")[1]) for p in pins}
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    for required in map(Requirement, pyproject["build-system"]["requires"]):
        assert required.name in pinned, f"{required.name} is not pinned in build-constraints.txt"
        assert pinned[required.name] in required.specifier, (required, pinned[required.name])
    # copied alone and installed before the sources come (a cached layer), binary only
    backend = index_of(build, "RUN", BUILD_CONSTRAINTS_IN_IMAGE)
    assert index_of(build, "COPY", "build-constraints.txt") < backend < index_of(build, "COPY", "service/")
    (install,) = [c for c in pip_commands(build) if is_build_backend_install(c)]
    assert "--no-deps" in install and "--only-binary=:all:" in install
    wheels = [c for c in pip_commands(build) if c[:1] == ["wheel"]]
    assert wheels and all("--no-build-isolation" in c for c in wheels), wheels


def test_the_revision_reaches_medic_build_info() -> None:
    """The REVISION build arg is written where medic_build_info reads it."""
    build = stages()["build"]
    written = f"/opt/medic-app/medic/{REVISION_FILE}"
    run = index_of(build, "RUN", written)
    assert index_of(build, "ARG", "REVISION") < run
    assert "${REVISION" in build.instructions[run].args
    assert run > index_of(build, "RUN", "--target /opt/medic-app"), "after Medic is installed there"


def test_multi_stage_non_root_and_what_the_chart_runs() -> None:
    final = stages()["runtime"]
    for forbidden in ("apt-get install", "build-essential", "gcc", "apk add"):
        assert all(forbidden not in r for r in runs(final))
    user = final.last("USER")
    assert user is not None and user.args.split(":")[0] == "10001"
    assert final.instructions.index(user) > max(final.instructions.index(i) for i in final.all("RUN"))
    entrypoint, cmd = final.last("ENTRYPOINT"), final.last("CMD")
    assert entrypoint and entrypoint.exec_form() == ["medic"]
    assert cmd and cmd.exec_form() == ["serve"]
    assert [i.args for i in final.all("EXPOSE")] == ["8080"]
    assert not final.all("HEALTHCHECK")


def test_dockerignore_keeps_what_the_dockerfile_copies() -> None:
    ignore = REPO / ".dockerignore"
    copied = [
        src
        for stage in parse_dockerfile(DOCKERFILE).stages
        for i in stage.all("COPY")
        if not i.flags.get("from")
        for src in i.args.split()[:-1]
    ]
    needed = {"constraints.txt", "build-constraints.txt", "setup.py", "pyproject.toml", "service/"}
    assert needed <= set(copied)
    for src in copied:
        inside = src + "x.yaml" if src.endswith("/") else src  # a file in a copied directory
        assert not dockerignore_excludes(ignore, inside), src
    for unwanted in ("dist/playcode_medic-0.1.0-py3-none-any.whl", "build/lib/medic/app.py", ".venv/bin/pip"):
        assert dockerignore_excludes(ignore, unwanted), unwanted
