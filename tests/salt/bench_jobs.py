"""Benchmark (not a test): sequential LocalClient jobs on transport raet against a stock one.

For each transport (default ``raet`` then ``zeromq``, in the same session), a lab with one
master and one minion (tests/salt/saltlab.py) is started, the minion's key accepted, and a
Salt-venv Python process runs ``LocalClient().cmd('*', 'test.ping')`` ``--jobs`` times in a
row after ``--warmup`` untimed jobs. Every job must return ``{minion: True}``. Prints, per
transport, the median, p90, p99 and max job time, then the ratio of the medians
(raet / baseline; below 1 means RAET is faster).

Run through ``scripts/salt-bench.sh`` (builds what is missing), or directly with Salt's venv
python: ``python tests/salt/bench_jobs.py --bin-dir target/release``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import saltlab

MINION = "bench-minion"

#: Runs in Salt's venv: times sequential LocalClient jobs, prints one JSON document.
CLIENT = r"""
import json, sys, time
import salt.client
conf, minion, warmup, jobs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
client = salt.client.LocalClient(c_path=conf)
times, bad = [], []
for n in range(warmup + jobs):
    start = time.perf_counter()
    ret = client.cmd("*", "test.ping", timeout=30)
    took = time.perf_counter() - start
    if ret != {minion: True}:
        bad.append(repr(ret))
    elif n >= warmup:
        times.append(took)
print(json.dumps({"times": times, "bad": bad}))
"""


def percentile(values: list[float], fraction: float) -> float:
    """The value at ``fraction`` of the sorted values (nearest rank)."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(fraction * len(ordered)) - 1))
    return ordered[rank]


def measure(transport: str, args: argparse.Namespace) -> dict:
    """Starts a one-minion lab on ``transport`` and times the jobs."""
    root = Path(tempfile.mkdtemp(prefix=f"salt-bench-{transport}-"))
    lab = saltlab.Lab(root, [MINION], Path(args.bin_dir), venv=args.venv, transport=transport)
    try:
        lab.configure()
        lab.start()
        lab.wait_pending([MINION], args.deadline)
        lab.accept(MINION)
        lab.wait_ping([MINION], args.deadline)
        proc = subprocess.run(
            [str(lab.venv / "bin" / "python"), "-c", CLIENT,
             str(lab.master.conf_dir / "master"), MINION, str(args.warmup), str(args.jobs)],
            capture_output=True, text=True, timeout=args.jobs * 35 + 120, check=False)
        docs = saltlab.json_documents(proc.stdout)
        if proc.returncode != 0 or len(docs) != 1:
            raise saltlab.LabError(f"LocalClient run failed: {proc.stderr[-2000:]}")
        result = docs[0]
        if result["bad"]:
            raise saltlab.LabError(f"{len(result['bad'])} jobs returned something else than "
                                   f"True, e.g. {result['bad'][0]}")
        return result
    finally:
        lab.stop()
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="salt-bench", description=__doc__.split("\n")[0])
    parser.add_argument("--bin-dir", default=str(saltlab.REPO_ROOT / "target" / "release"))
    parser.add_argument("--venv", default=None)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--deadline", type=float, default=180.0)
    parser.add_argument("--transports", default="raet,zeromq",
                        help="comma-separated; the first is compared with each other one")
    args = parser.parse_args(argv)
    names = args.transports.split(",")
    medians = {}
    for name in names:
        try:
            times = [t * 1000 for t in measure(name, args)["times"]]
        except saltlab.LabError as exc:
            print(f"salt-bench: {name}: FAILED: {exc}", file=sys.stderr)
            return 1
        medians[name] = statistics.median(times)
        print(f"salt-bench: {name:8} {len(times)} jobs  median {medians[name]:7.1f} ms  "
              f"p90 {percentile(times, 0.9):7.1f}  p99 {percentile(times, 0.99):7.1f}  "
              f"max {max(times):7.1f} ms", flush=True)
    for other in names[1:]:
        print(f"salt-bench: median ratio {names[0]}/{other} = "
              f"{medians[names[0]] / medians[other]:.2f}")
    print(json.dumps({"median_ms": medians}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
