"""docs/python.md's tutorial runs as written (on free ports and a temporary directory)."""

import re
from pathlib import Path

from conftest import free_port

DOC = Path(__file__).resolve().parents[3] / "docs" / "python.md"


def blocks():
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)


def test_the_road_tutorial_runs(capsys):
    road = blocks()[1]
    for port in ("7531", "7532"):
        road = road.replace(port, str(free_port()))
    exec(compile(road, str(DOC), "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert out == ["beta True True", "alpha {'subject': 'Hello', 'content': 'from alpha'}"]


def test_the_asyncio_example_runs(capsys):
    exec(compile(blocks()[3], str(DOC), "exec"), {})
    assert capsys.readouterr().out.splitlines() == ["({'subject': 'Hello'}, 'alpha')"]


def test_the_lane_tutorial_runs(capsys, tmp_path):
    lane = blocks()[2].replace('"/tmp/raet"', repr(str(tmp_path)))
    exec(compile(lane, str(DOC), "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert out == ["({'subject': 'Main to Other', 'content': 'Hello'}, 'main')"]
