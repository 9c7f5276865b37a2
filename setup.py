"""Build hook: ship the repository's top-level ``configs/`` inside the package as ``dinosim/configs/``.

The committed TOMLs stay where users and the docs look for them (``configs/<species>/*.toml``); setuptools maps
that folder onto the ``dinosim.configs`` package at build time (``package_dir``), so a wheel or a non-editable
``pip install .`` carries them without a second copy in git. Everything else is in pyproject.toml.
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["dinosim", "dinosim.*"]), "dinosim.configs"],
    package_dir={"dinosim.configs": "configs"},
)
