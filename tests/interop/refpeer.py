#!/usr/bin/env python3
"""Reference RAET peer for salt-raet's interop tests, on the Python raet 0.6.8 stacks.

Run it with the interpreter of the venv made by tests/interop/setup-ref.sh.  Its
command line is the one of the Rust `raet` command, so a test can put either
implementation on either side:

  refpeer.py road --name NAME --port P [--host 127.0.0.1] [--main]
                  [--auto never|once|always] [--join HOST:PORT] [--send JSON]...
                  [--size N]... [--expect N] [--timeout S] [--keep DIR] [--hk raet|json]
  refpeer.py lane --name YARD --dir DIR [--lane LANE] [--to YARD] [--send JSON]...
                  [--size N]... [--expect N] [--timeout S]

--send sends that JSON object, --size N sends {"blob": "<N characters>"}.  Messages
go to the joined remote (road) or the --to yard (lane) once that is possible; a
stack without --join (--to) sends them to the first remote that becomes allowed
(the first yard it hears from).  Every received message is one JSON line on
stdout: {"from": "<sender name>", "msg": {...}}.

Exit status: 0 once --expect messages are received and all own messages are
acknowledged (and, with --join, the joined remote is allowed); 1 when the join
is rejected (final, as in the Rust command); 2 on timeout; 3 on bad arguments
(one line on stderr).

Harness-only options (not in the Rust command):
  --events           JSON event lines on stderr: listening, joined, allowed, alived,
                     pending/rejected (with "by": "us" or "them"), accepted,
                     removed, sent, done, timeout, exception
  --control          read operator commands from stdin, one a line:
                     "accept NAME" / "reject NAME" (raet's keep acceptRemote /
                     rejectRemote; applied as soon as a remote of that name exists)
  --accept-after S   accept every remote whose keys we pend, S seconds after the pend
  --role ROLE        local role (default: the name); keys are accepted per role
  --sighex/--prihex  fixed long-term keys (32-byte seeds, 64 hex chars)
  --linger S         keep serving S seconds after success (default 0.5) so the
                     peer's late acks still get answered
"""
import argparse
import json
import os
import queue
import select
import shutil
import sys
import tempfile
import threading
import time
import traceback

EXIT_OK, EXIT_FAILED, EXIT_TIMEOUT, EXIT_USAGE = 0, 1, 2, 3
# raet's own knob (bufcnt x 1 KiB packets): raise the UDP buffers from ~200 KiB to 4 MiB,
# as the Rust stack does, so a multi-megabyte burst of segments is not mostly dropped.
SOCKET_BUFFER = 4 << 20
REJOIN_INTERVAL = 1.0
# How long a responder waits for the joiner's first alive before sending anyway.
ALIVE_GRACE = 2.0
# Remotes (uids) from which an alive request arrived while allowed (set by a hook).
ALIVES_HEARD = set()  # seconds between join attempts while the joined remote is not allowed


class UsageError(Exception):
    """Bad command-line arguments: exit 3 with a one-line reason."""


class Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def json_object(text):
    try:
        value = json.loads(text)
    except ValueError as ex:
        raise argparse.ArgumentTypeError("not JSON: %s" % ex)
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object: %s" % text)
    return value


def non_negative_int(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0: %s" % text)
    return value


def positive_seconds(text):
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be > 0: %s" % text)
    return value


def key_hex(text):
    if len(text) != 64 or any(c not in "0123456789abcdefABCDEF" for c in text):
        raise argparse.ArgumentTypeError("must be 64 hex characters")
    return text.lower()


def host_port(text):
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError("must be HOST:PORT: %s" % text)
    return (host, int(port))


def parse_args(argv):
    parser = Parser(prog="refpeer.py", description="RAET reference peer (raet 0.6.8)",
                    epilog=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    modes = parser.add_subparsers(dest="mode", required=True, parser_class=Parser)
    common = Parser(add_help=False)
    common.add_argument("--name", required=True)
    common.add_argument("--send", type=json_object, action="append", default=[])
    common.add_argument("--size", type=non_negative_int, action="append", default=[])
    common.add_argument("--expect", type=non_negative_int, default=0)
    common.add_argument("--timeout", type=positive_seconds, default=30.0)
    common.add_argument("--events", action="store_true")
    common.add_argument("--linger", type=float, default=0.5)
    road = modes.add_parser("road", parents=[common])
    road.add_argument("--port", type=int, required=True)
    road.add_argument("--host", default="127.0.0.1")
    road.add_argument("--main", action="store_true")
    road.add_argument("--auto", choices=["never", "once", "always"], default="always")
    road.add_argument("--join", type=host_port)
    road.add_argument("--keep")
    road.add_argument("--hk", choices=["raet", "json"], default="raet")
    road.add_argument("--role")
    road.add_argument("--sighex", type=key_hex)
    road.add_argument("--prihex", type=key_hex)
    road.add_argument("--control", action="store_true")
    road.add_argument("--accept-after", type=float)
    lane = modes.add_parser("lane", parents=[common])
    lane.add_argument("--dir", required=True)
    lane.add_argument("--lane", default="lane")
    lane.add_argument("--to")
    args = parser.parse_args(argv)
    if args.mode == "road" and not 0 < args.port < 65536:
        raise UsageError("--port must be 1..65535")
    args.bodies = list(args.send) + [{"blob": "x" * n} for n in args.size]
    return args


class Output(object):
    """stdout message lines and (with --events) stderr event lines."""

    def __init__(self, events):
        self.events = events
        self.t0 = time.monotonic()
        self.once = set()

    def message(self, sender, body):
        sys.stdout.write(json.dumps({"from": sender, "msg": body}) + "\n")
        sys.stdout.flush()

    def event(self, kind, **fields):
        if self.events or kind in ("timeout", "exception"):
            fields = dict(event=kind, t=round(time.monotonic() - self.t0, 3), **fields)
            sys.stderr.write(json.dumps(fields, default=str) + "\n")
            sys.stderr.flush()

    def event_once(self, kind, **fields):
        key = (kind, tuple(sorted(fields.items())))
        if key not in self.once:
            self.once.add(key)
            self.event(kind, **fields)


OUT = Output(events=False)


def remote_of(transaction):
    """(name, "host:port") of a join transaction's remote.  The name comes from the join
    body when it has one; a joiner that has not had the joinent's response yet (its fuid
    is still 0) does not know the joinent's name: None."""
    from raet.road.transacting import Joiner

    body = getattr(getattr(transaction, "rxPacket", None), "body", None)
    remote = transaction.remote
    name = getattr(body, "data", {}).get("name") if body is not None else None
    if name is None and not (isinstance(transaction, Joiner) and remote.fuid == 0):
        name = remote.name
    return name, "%s:%s" % tuple(remote.ha)


def install_join_hooks():
    """Report key-acceptance decisions of raet's join transactions as events."""
    from raet.raeting import PcktKind
    from raet.road import transacting

    def wrap(cls, method, kind, by, nack_kind=None):
        original = getattr(cls, method)

        def hooked(self, *args, **kwargs):
            sent_kind = kwargs.get("kind", args[0] if args else None)
            result = original(self, *args, **kwargs)
            if nack_kind is None or (sent_kind is not None and int(sent_kind) == nack_kind):
                name, ha = remote_of(self)
                OUT.event_once(kind, name=name, ha=ha, by=by)
            return result
        setattr(cls, method, hooked)

    original_alive = transacting.Alivent.alive

    def alive(self):
        original_alive(self)
        if self.remote is not None and self.remote.allowed:
            ALIVES_HEARD.add(self.remote.uid)
    transacting.Alivent.alive = alive

    for cls in (transacting.Joiner, transacting.Joinent):
        wrap(cls, "pendify", "pending", "us")
        wrap(cls, "pend", "pending", "them")
        wrap(cls, "nack", "rejected", "us", nack_kind=PcktKind.reject.value)
        wrap(cls, "reject", "rejected", "them")
    wrap(transacting.Joiner, "refuse", "refused", "them")


class Operator(object):
    """Operator decisions on pending keys: stdin commands and --accept-after."""

    def __init__(self, control, accept_after):
        self.accept_after = accept_after
        self.commands = queue.Queue()
        self.todo = []
        self.pended = {}
        if control:
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in sys.stdin:
            words = line.split()
            if len(words) == 2 and words[0] in ("accept", "reject"):
                self.commands.put((words[0], words[1]))
            elif words:
                OUT.event("exception", error="unknown control command: %r" % line.strip())

    def apply(self, stack, now):
        while not self.commands.empty():
            self.todo.append(self.commands.get())
        if self.accept_after is not None:
            for remote in stack.remotes.values():
                if remote.acceptance == 0 and remote.name not in self.pended:
                    self.pended[remote.name] = now
            for name, since in list(self.pended.items()):
                if since is not None and now - since >= self.accept_after:
                    self.todo.append(("accept", name))
                    self.pended[name] = None
        left = []
        for verb, name in self.todo:
            remote = stack.nameRemotes.get(name)
            if remote is None:
                left.append((verb, name))
            elif verb == "accept":
                stack.keep.acceptRemote(remote)
                OUT.event("accepted", name=name)
            else:
                stack.keep.rejectRemote(remote)
                OUT.event("rejected", name=name, by="operator")
        self.todo = left


class RoadPeer(object):
    def __init__(self, args):
        from raet.raeting import AutoMode, HeadKind
        from raet.road import stacking

        self.args = args
        self.tmp = None
        if args.keep:
            base = os.path.abspath(args.keep)
        else:
            base = self.tmp = tempfile.mkdtemp(prefix="refpeer-")
        keys = {}
        if args.sighex:
            keys["sigkey"] = args.sighex
        if args.prihex:
            keys["prikey"] = args.prihex
        self.stack = stacking.RoadStack(
            name=args.name, ha=(args.host, args.port), main=True if args.main else None,
            auto=getattr(AutoMode, args.auto).value, role=args.role, basedirpath=base,
            bufcnt=SOCKET_BUFFER // 1024, **keys)
        self.stack.Hk = getattr(HeadKind, args.hk).value
        self.operator = Operator(args.control, args.accept_after)
        self.received = 0
        self.sent = False
        self.rejected = False
        self.target = None
        self.last_join = None
        self.states = {}
        self.allowed_at = {}
        self.now = 0.0
        local = self.stack.local
        OUT.event("listening", name=local.name, ha=self.stack.ha, main=bool(args.main),
                  auto=args.auto, role=local.role, verhex=local.signer.verhex.decode(),
                  pubhex=local.priver.pubhex.decode())

    def fd(self):
        return self.stack.server.ss

    def start(self):
        if self.args.join:
            from raet.road import estating
            ha = self.args.join
            remote = next((r for r in self.stack.remotes.values() if tuple(r.ha) == ha), None)
            if remote is None:
                remote = estating.RemoteEstate(stack=self.stack, ha=ha)
                self.stack.addRemote(remote)
            self.target = remote.uid

    def own_transactions(self, kinds):
        return [t for r in self.stack.remotes.values() for t in r.transactions.values()
                if t.kind in kinds and not t.rmt]

    def step(self, now):
        from raet.raeting import TrnsKind

        stack = self.stack
        self.now = now
        stack.store.changeStamp(now)
        guarded(stack.serviceAllRx)
        self.operator.apply(stack, now)
        self.report(now)
        while stack.rxMsgs:
            body, sender = stack.rxMsgs.popleft()
            OUT.message(sender, body)
            self.received += 1
        if self.target is not None and not self.rejected:
            remote = stack.remotes.get(self.target)
            if remote is None:
                self.rejected = True  # raet removes a remote whose join was rejected
                OUT.event_once("removed", ha="%s:%s" % self.args.join)
            elif (not remote.allowed and not self.own_transactions((TrnsKind.join, TrnsKind.allow))
                  and (self.last_join is None or now - self.last_join >= REJOIN_INTERVAL)):
                self.last_join = now
                stack.join(uid=remote.uid, cascade=True)
        if self.args.bodies and not self.sent:
            to = self.destination()
            if to is not None:
                for body in self.args.bodies:
                    stack.transmit(body, to.uid)
                self.sent = True
                OUT.event("sent", count=len(self.args.bodies), to=to.name)
        guarded(stack.serviceAllTx)

    def destination(self):
        """The remote to send our messages to, once the handshakes with it are over.

        raet 0.6.8 has no flow control (burst 0): a big message floods the peer with
        segments at once.  Started while the peer still has a handshake open, the flood
        makes it fail (a responder's segments reach a joiner that is not allowed yet; a
        joiner's flood delays the final allow ack until the responder's Allowent times
        out).  So a joiner waits until its join/allow/alive cascade is complete (the alive
        ack proves the responder processed the final allow ack), and a responder until
        its Allowent ended on that final ack and the joiner's first alive arrived (or
        ALIVE_GRACE passed without one)."""
        from raet.raeting import TrnsKind
        if self.target is not None:
            remote = self.stack.remotes.get(self.target)
            handshakes = (TrnsKind.join, TrnsKind.allow, TrnsKind.alive)
        else:
            remote = next((r for r in self.stack.remotes.values() if r.allowed), None)
            handshakes = (TrnsKind.allow,)
        if remote is None or not remote.allowed or any(
                t.kind in handshakes for t in remote.transactions.values()):
            return None
        if self.target is None and remote.uid not in ALIVES_HEARD:
            since = self.allowed_at.get(remote.uid)
            if since is None or self.now - since < ALIVE_GRACE:
                return None
        return remote

    def report(self, now):
        for remote in list(self.stack.remotes.values()):
            state = (remote.joined, remote.allowed, remote.alived)
            before = self.states.get(remote.uid, (None, None, None))
            if state != before:
                self.states[remote.uid] = state
                if remote.allowed and not before[1]:
                    self.allowed_at[remote.uid] = now
                for kind, was, is_ in zip(("joined", "allowed", "alived"), before, state):
                    if is_ and not was:
                        OUT.event(kind, name=remote.name, uid=remote.uid, fuid=remote.fuid)

    def failed(self):
        return self.rejected

    def done(self):
        from raet.raeting import TrnsKind

        stack = self.stack
        acked = (not self.args.bodies or
                 (self.sent and stack.stats.get("message_initiate_complete", 0) >= len(self.args.bodies)))
        joined = self.target is None or self.destination() is not None
        return (self.received >= self.args.expect and acked and joined and not stack.txMsgs
                and not self.own_transactions((TrnsKind.message,)))

    def summary(self):
        return dict(received=self.received, sent=self.sent, rejected=self.rejected,
                    remotes={r.name: dict(joined=r.joined, allowed=r.allowed, alived=r.alived,
                                          acceptance=r.acceptance)
                             for r in self.stack.remotes.values()},
                    stats=dict(self.stack.stats))

    def close(self):
        self.stack.server.close()
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)


class LanePeer(object):
    def __init__(self, args):
        from raet.lane import stacking, yarding

        self.args = args
        self.yarding = yarding
        self.stack = stacking.LaneStack(name=args.name, lanename=args.lane, sockdirpath=args.dir)
        self.received = 0
        self.sent = False
        self.first_sender = None
        OUT.event("listening", name=args.name, ha=self.stack.ha)

    def fd(self):
        return self.stack.server.ss

    def start(self):
        pass

    def step(self, now):
        stack = self.stack
        guarded(stack.serviceAllRx)
        while stack.rxMsgs:
            body, sender = stack.rxMsgs.popleft()
            self.first_sender = self.first_sender or sender
            OUT.message(sender, body)
            self.received += 1
        if self.args.bodies and not self.sent:
            to = self.args.to or self.first_sender
            # lane datagrams have no acks: send only once the peer's socket exists
            ha, _ = self.yarding.Yard.computeHa(self.args.dir, self.args.lane, to) if to else (None, None)
            if ha is not None and os.path.exists(ha):
                remote = stack.haRemotes.get(ha)
                if remote is None:
                    remote = self.yarding.RemoteYard(stack=stack, ha=ha)
                    stack.addRemote(remote)
                for body in self.args.bodies:
                    stack.transmit(body, remote.uid)
                self.sent = True
                OUT.event("sent", count=len(self.args.bodies), to=to)
        guarded(stack.serviceAllTx)

    def failed(self):
        return False

    def done(self):
        stack = self.stack
        return (self.received >= self.args.expect and (self.sent or not self.args.bodies)
                and not stack.txMsgs and not stack.txes)

    def summary(self):
        return dict(received=self.received, sent=self.sent, stats=dict(self.stack.stats))

    def close(self):
        self.stack.server.close()


def guarded(service):
    """raet 0.6.8 lets some bad input escape as exceptions (libnacl CryptError):
    report them and keep serving, as a real peer must."""
    try:
        service()
    except Exception as ex:
        OUT.event("exception", error=repr(ex), trace=traceback.format_exc(limit=3))


def serve(peer, args):
    t0 = time.monotonic()
    done_at = None
    peer.start()
    while True:
        now = time.monotonic() - t0
        peer.step(now)
        if done_at is None and peer.failed():
            OUT.event("failed", **peer.summary())
            return EXIT_FAILED
        if done_at is None and peer.done():
            done_at = now
            OUT.event("done", **peer.summary())
        if done_at is not None and now - done_at >= args.linger:
            return EXIT_OK
        if now >= args.timeout:
            if done_at is not None:
                return EXIT_OK
            OUT.event("timeout", after=args.timeout, expected=args.expect, **peer.summary())
            return EXIT_TIMEOUT
        select.select([peer.fd()], [], [], 0.005)


def main(argv):
    global OUT
    try:
        args = parse_args(argv)
    except UsageError as ex:
        sys.stderr.write("refpeer: bad arguments: %s\n" % ex)
        return EXIT_USAGE
    OUT = Output(events=args.events)
    from ioflo.base.consoling import getConsole
    getConsole().reinit(verbosity=getConsole().Wordage.mute)
    if args.mode == "road":
        install_join_hooks()
        peer = RoadPeer(args)
    else:
        peer = LanePeer(args)
    try:
        return serve(peer, args)
    finally:
        peer.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
