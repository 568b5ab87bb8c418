"""Benchmark (not a test): LocalClient jobs and Salt's file server on transport raet against a stock one.

For each transport (default ``raet`` then ``zeromq``, in the same session), a lab with one
master and one minion (tests/salt/saltlab.py) is started, the minion's key accepted, and a
Salt-venv Python process runs ``LocalClient().cmd('*', 'test.ping')`` ``--jobs`` times in a
row after ``--warmup`` untimed jobs, then ``cp.get_file`` of a ``--file-mb`` MB random file
``--files`` times (its SHA-256 checked each time). Every job must return what it should.
Prints, per transport, the median, p90, p99 and max job time and the median file time, then
the ratios of the medians (raet / baseline; below 1 means RAET is faster).

Run through ``scripts/salt-bench.sh`` (builds what is missing), or directly with Salt's venv
python: ``python tests/salt/bench_jobs.py --bin-dir target/release``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
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
files, dest, digest = int(sys.argv[5]), sys.argv[6], sys.argv[7]
client = salt.client.LocalClient(c_path=conf)
times, file_times, bad = [], [], []
for n in range(warmup + jobs):
    start = time.perf_counter()
    ret = client.cmd("*", "test.ping", timeout=30)
    took = time.perf_counter() - start
    if ret != {minion: True}:
        bad.append(repr(ret))
    elif n >= warmup:
        times.append(took)
for n in range(files):
    start = time.perf_counter()
    ret = client.cmd(minion, "cp.get_file", ["salt://bench.bin", dest], timeout=600)
    took = time.perf_counter() - start
    sha = client.cmd(minion, "file.get_hash", [dest, "sha256"], timeout=60)
    if ret != {minion: dest} or sha != {minion: digest}:
        bad.append(repr((ret, sha)))
    else:
        file_times.append(took)
    client.cmd(minion, "file.remove", [dest], timeout=60)
print(json.dumps({"times": times, "file_times": file_times, "bad": bad}))
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
        data = os.urandom(args.file_mb * 1_000_000)
        (lab.srv / "salt" / "bench.bin").write_bytes(data)
        digest = hashlib.sha256(data).hexdigest()
        del data
        lab.start()
        lab.wait_pending([MINION], args.deadline)
        lab.accept(MINION)
        lab.wait_ping([MINION], args.deadline)
        proc = subprocess.run(
            [str(lab.venv / "bin" / "python"), "-c", CLIENT,
             str(lab.master.conf_dir / "master"), MINION, str(args.warmup), str(args.jobs),
             str(args.files), str(lab.out_dir / "bench.bin"), digest],
            capture_output=True, text=True, timeout=args.jobs * 35 + args.files * 700 + 120,
            check=False)
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
    parser.add_argument("--file-mb", type=int, default=64,
                        help="size of the file cp.get_file fetches, MB")
    parser.add_argument("--files", type=int, default=3,
                        help="cp.get_file runs per transport (the median is reported)")
    parser.add_argument("--transports", default="raet,zeromq",
                        help="comma-separated; the first is compared with each other one")
    args = parser.parse_args(argv)
    names = args.transports.split(",")
    with open("/proc/loadavg", encoding="ascii") as loadavg:
        print(f"salt-bench: load average {' '.join(loadavg.read().split()[:3])} "
              f"on {os.cpu_count()} cores", flush=True)
    medians, file_medians = {}, {}
    for name in names:
        try:
            result = measure(name, args)
        except saltlab.LabError as exc:
            print(f"salt-bench: {name}: FAILED: {exc}", file=sys.stderr)
            return 1
        times = [t * 1000 for t in result["times"]]
        medians[name] = statistics.median(times)
        print(f"salt-bench: {name:8} {len(times)} jobs  median {medians[name]:7.1f} ms  "
              f"p90 {percentile(times, 0.9):7.1f}  p99 {percentile(times, 0.99):7.1f}  "
              f"max {max(times):7.1f} ms", flush=True)
        if result["file_times"]:
            file_medians[name] = statistics.median(result["file_times"])
            print(f"salt-bench: {name:8} cp.get_file {args.file_mb} MB x"
                  f"{len(result['file_times'])}  median {file_medians[name]:6.2f} s  "
                  f"({args.file_mb / file_medians[name]:.1f} MB/s)", flush=True)
    for other in names[1:]:
        print(f"salt-bench: median ratio {names[0]}/{other}: test.ping "
              f"{medians[names[0]] / medians[other]:.2f}", end="")
        if names[0] in file_medians and other in file_medians:
            print(f", cp.get_file {file_medians[names[0]] / file_medians[other]:.2f}", end="")
        print()
    print(json.dumps({"median_ms": medians, "file_median_s": file_medians}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
