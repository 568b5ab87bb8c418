"""The native module's stubs (raet_rs/_native.pyi) match it: mypy's stubtest."""

import subprocess
import sys


def test_stubtest_finds_no_difference(tmp_path):
    # In a temporary directory: mypy leaves its cache in the current one.
    run = subprocess.run([sys.executable, "-m", "mypy.stubtest", "raet_rs._native"],
                         capture_output=True, text=True, check=False, cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
