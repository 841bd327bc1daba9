"""Packaging beyond what pyproject.toml can say: ship the top-level ``rules/`` and ``playbooks/``
inside the wheel as ``medic/defaults/rules`` and ``medic/defaults/playbooks``.

The directories stay at the top of the repository (where users edit them); ``package_dir`` maps
each one onto a data-only package, every subdirectory (e.g. a future ``rules/tests/``) is one too,
and ``package_data`` takes all of their files. pyproject.toml cannot combine package discovery
with such mapped packages, hence this file; all other metadata lives in pyproject.toml.
"""

from setuptools import find_namespace_packages, setup

DEFAULTS = {"medic.defaults.rules": "rules", "medic.defaults.playbooks": "playbooks"}
SKIP = ["__pycache__", "*.__pycache__"]


def data_packages(package: str, directory: str) -> list[str]:
    subpackages = find_namespace_packages(directory, exclude=SKIP)
    return [package, *(f"{package}.{sub}" for sub in subpackages)]


data = [name for package, directory in DEFAULTS.items() for name in data_packages(package, directory)]
code = find_namespace_packages("service", include=["medic", "medic.*"], exclude=SKIP)

setup(
    packages=[*code, *data],
    package_dir={"": "service", **DEFAULTS},
    package_data={"medic": ["py.typed"], "medic.app.http.web.templates": ["*.html"], **{name: ["*"] for name in data}},
)
