"""Fixtures of the end-to-end suite: one lab (a master and two minions) per test module.

The lab logic is `saltlab.py` (shared with the demo). Environment: `SALT_RAET_VENV` (Salt's
venv, default target/salt-venv), `SALT_RAET_BIN_DIR` (daemon binaries; default
target/debug, built with cargo when missing), `SALT_RAET_PORTS` (e.g. 29000-29999),
`SALT_RAET_TRANSPORT` (default raet), `SALT_RAET_KEEP_LAB=1` keeps the lab directory.
"""

import contextlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

import saltlab

# Two minions with a grain that tells them apart (grain and compound targeting).
MINIONS = ["web-1", "db-1"]
GRAINS = {"web-1": {"lab_role": "web"}, "db-1": {"lab_role": "db"}}


def pytest_configure(config):
    """Registers the marker of the subset CI also runs on Salt 3007 (``pytest -m core``)."""
    config.addinivalue_line(
        "markers", "core: the representative subset also run on Salt 3007.x in CI")


@pytest.fixture(scope="session")
def bin_dir() -> Path:
    """Directory of salt-raet-master / salt-raet-minion; builds them (debug) if absent."""
    given = os.environ.get("SALT_RAET_BIN_DIR")
    path = Path(given) if given else saltlab.REPO_ROOT / "target" / "debug"
    wanted = [path / "salt-raet-master", path / "salt-raet-minion"]
    if not given and not all(p.exists() for p in wanted):
        subprocess.run(["cargo", "build", "-p", "salt-raet-master", "-p", "salt-raet-minion"],
                       cwd=saltlab.REPO_ROOT, check=True)
    return path


@contextlib.contextmanager
def running_lab(tmp_path_factory, bin_dir, minions, **options):
    """A configured and started lab (``saltlab.Lab`` options), stopped by PID on exit and
    its directory removed unless ``SALT_RAET_KEEP_LAB=1``."""
    root = tmp_path_factory.mktemp("lab")
    lab = saltlab.Lab(root, minions, bin_dir, **options)
    lab.configure()
    try:
        lab.start()
        yield lab
    finally:
        lab.stop()
        if os.environ.get("SALT_RAET_KEEP_LAB") != "1":
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def lab(tmp_path_factory, bin_dir):
    """A started lab: salt-master + salt-raet-master, and per minion salt-raet-minion +
    salt-minion, all keys still unaccepted. Stopped (by PID) after the module."""
    with running_lab(tmp_path_factory, bin_dir, MINIONS, minion_grains=GRAINS) as lab:
        yield lab
