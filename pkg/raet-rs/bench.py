#!/usr/bin/env python3
"""Benchmark: COUNT messages of SIZE bytes between two Python processes, on raet_rs and on
the reference raet 0.6.8, with the same program (``import raet_rs as raet`` or ``import
raet``); prints the messages per second of each, their ratio and the machine's load.

    python bench.py [--count 2000] [--size 1024] [--ref-python target/ref-venv/bin/python]

Run it with an interpreter that has raet_rs installed; ``--ref-python`` is the reference's
(tests/interop/setup-ref.sh). The sender keeps at most ``--window`` messages unacknowledged
(``len(stack.transactions)``) and times from its first transmit to the last acknowledgement;
the receiver checks every message (order and size).
"""

import argparse
import importlib
import os
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_REF = os.path.join(HERE, "..", "..", "target", "ref-venv", "bin", "python")


def service(stack, t0):
    """One turn of the service loop (the reference's clock is its ioflo store's stamp)."""
    store = getattr(stack, "store", None)
    if store is not None:
        store.changeStamp(time.monotonic() - t0)
    stack.serviceAll()


def peer(args):
    """One side: the main receiver, or the sender that joins it."""
    raet = importlib.import_module(args.impl)  # import raet_rs as raet, or import raet
    for module in ("raeting", "road.stacking", "road.estating"):
        importlib.import_module(f"{args.impl}.{module}")
    if args.impl == "raet":  # the reference prints every transaction on its ioflo console
        from ioflo.base.consoling import getConsole

        getConsole().reinit(verbosity=getConsole().Wordage.mute)

    t0 = time.monotonic()
    keep = tempfile.mkdtemp(prefix="raet-bench-")
    receiver = args.peer == "recv"
    stack = raet.road.stacking.RoadStack(
        name=args.peer, ha=("127.0.0.1", args.port if receiver else 0), main=receiver,
        auto=raet.raeting.AutoMode.always.value, basedirpath=keep, bufcnt=64,
    )
    deadline = t0 + args.timeout
    if receiver:
        # Messages are separate transactions: the reference may deliver them out of order.
        seen = set()
        while len(seen) < args.count and time.monotonic() < deadline:
            service(stack, t0)
            while stack.rxMsgs:
                msg, _source = stack.rxMsgs.popleft()
                if len(msg.get("pad", "")) != args.size or msg.get("n") in seen:
                    sys.exit(f"message {msg.get('n')} is wrong or a duplicate")
                seen.add(msg["n"])
        end = time.monotonic() + 1.0
        while time.monotonic() < end:  # answer the sender's late acks
            service(stack, t0)
            time.sleep(0.001)
        ok = seen == set(range(args.count))
        sys.exit(0 if ok else f"received {len(seen)} of {args.count}")

    remote = raet.road.estating.RemoteEstate(stack=stack, ha=("127.0.0.1", args.port))
    stack.addRemote(remote)
    stack.join(uid=remote.uid, cascade=True)
    while (stack.transactions or not remote.allowed) and time.monotonic() < deadline:
        service(stack, t0)
        time.sleep(0.001)
    if not remote.allowed:
        sys.exit("the join did not complete")
    pad = "x" * args.size
    start = time.monotonic()
    sent = 0
    while (sent < args.count or stack.transactions) and time.monotonic() < deadline:
        while sent < args.count and len(stack.transactions) < args.window:
            stack.transmit({"n": sent, "pad": pad}, remote.uid)
            sent += 1
        service(stack, t0)
    if stack.transactions:
        sys.exit("timed out")
    print(time.monotonic() - start, flush=True)


def run(python, impl, args):
    """Messages per second of ``impl`` (raet_rs or raet) between two processes."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    common = ["--impl", impl, "--port", str(port), "--count", str(args.count),
              "--size", str(args.size), "--window", str(args.window), "--timeout", str(args.timeout)]
    recv = subprocess.Popen([python, __file__, "--peer", "recv", *common])
    time.sleep(1.5)  # the receiver binds (the reference imports ioflo first)
    send = subprocess.run([python, __file__, "--peer", "send", *common],
                          stdout=subprocess.PIPE, text=True, check=False)
    if recv.wait(timeout=args.timeout + 5) != 0 or send.returncode != 0:
        sys.exit(f"{impl}: the run failed (sender {send.returncode}, receiver {recv.returncode})")
    seconds = float(send.stdout.split()[-1])
    rate = args.count / seconds
    print(f"{impl:8} {args.count} x {args.size} B: {seconds:.3f} s, {rate:,.0f} messages/s", flush=True)
    return rate


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--ref-python", default=os.environ.get("RAET_REF_PYTHON", DEFAULT_REF))
    parser.add_argument("--peer", choices=["recv", "send"], help=argparse.SUPPRESS)
    parser.add_argument("--impl", choices=["raet_rs", "raet"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer:
        return peer(args)
    load = os.getloadavg()
    fast = run(sys.executable, "raet_rs", args)
    slow = run(args.ref_python, "raet", args)
    print(f"ratio    {fast / slow:.1f}x (raet_rs / raet)")
    print(f"load     {load[0]:.2f} before, {os.getloadavg()[0]:.2f} after "
          f"(1-minute average, {os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
