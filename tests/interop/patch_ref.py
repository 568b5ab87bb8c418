#!/usr/bin/env python3
"""Make the reference raet 0.6.8 (+ ioflo 2.0.3) importable and working on Python 3.11.

Usage: patch_ref.py [SITE_PACKAGES]   (default: this interpreter's purelib)

Run it with the venv's interpreter.  It rewrites, in the installed `raet` and
`ioflo` packages only, three kinds of Python 3.9/3.10 incompatibilities, none
of which changes a byte on the wire:

  abc-import   `from collections import Mapping, deque` -> the abstract base
               classes come from `collections.abc` (aliases removed in 3.10).
  abc-module   a module that uses `collections.abc.X` after a bare
               `import collections` also gets `import collections.abc`.
  json-enc     `json.loads(..., encoding='utf-8')`: the keyword was removed in
               3.9; it is dropped (the text was already decoded as UTF-8).

The rules find the spots themselves, so running twice changes nothing the
second time.  Afterwards every rule is re-checked (nothing may remain) and a
fresh interpreter must import `raet.road` and `raet.lane` and round-trip a json
packet body.  Exit status 0 = patched and verified, 1 = verification failed.
"""
import os
import re
import subprocess
import sys
import sysconfig

PACKAGES = ("raet", "ioflo")
ABC_NAMES = frozenset((
    "Awaitable", "Coroutine", "AsyncIterable", "AsyncIterator", "AsyncGenerator",
    "Hashable", "Iterable", "Iterator", "Generator", "Reversible", "Sized",
    "Container", "Callable", "Collection", "Set", "MutableSet", "Mapping",
    "MutableMapping", "MappingView", "KeysView", "ItemsView", "ValuesView",
    "Sequence", "MutableSequence", "ByteString",
))
FROM_COLLECTIONS = re.compile(r"^(?P<indent>[ \t]*)from collections import (?P<names>[^()\\#\n]+?)[ \t]*$",
                              re.MULTILINE)
BARE_IMPORT = re.compile(r"^(?P<indent>[ \t]*)import collections[ \t]*$", re.MULTILINE)
ENCODING_KWARG = re.compile(r",\s*encoding\s*=\s*(?:'[^']*'|\"[^\"]*\")\s*(?=\)$)")


def fix_abc_imports(text):
    """Split ABC names out of `from collections import ...` lines."""
    def split(match):
        names = [n.strip() for n in match.group("names").split(",") if n.strip()]
        abc = [n for n in names if n.split(" as ")[0].strip() in ABC_NAMES]
        if not abc:
            return match.group(0)
        rest = [n for n in names if n not in abc]
        indent = match.group("indent")
        lines = []
        if rest:
            lines.append("%sfrom collections import %s" % (indent, ", ".join(rest)))
        lines.append("%sfrom collections.abc import %s" % (indent, ", ".join(abc)))
        return "\n".join(lines)
    return FROM_COLLECTIONS.sub(split, text)


def fix_abc_module(text):
    """Add `import collections.abc` where `collections.abc.` is used after a bare import."""
    if "collections.abc." not in text or re.search(r"^\s*import collections\.abc\b", text, re.MULTILINE):
        return text
    return BARE_IMPORT.sub(lambda m: "%s\n%simport collections.abc" % (m.group(0), m.group("indent")),
                           text, count=1)


def call_spans(text, callee):
    """Yield (start, end) of each `callee(...)` call, end just past its closing parenthesis."""
    pos = 0
    while True:
        start = text.find(callee + "(", pos)
        if start < 0:
            return
        depth = 0
        i = start + len(callee)
        while i < len(text):
            if text[i] == "(":
                depth += 1
            elif text[i] == ")":
                depth -= 1
                if depth == 0:
                    break
            i += 1
        yield start, i + 1
        pos = i + 1


def fix_json_encoding(text):
    """Drop a trailing `encoding=...` keyword argument from every json.loads call."""
    out, last = [], 0
    for start, end in call_spans(text, "json.loads"):
        call = text[start:end]
        out.append(text[last:start])
        out.append(ENCODING_KWARG.sub("", call))
        last = end
    out.append(text[last:])
    return "".join(out)


RULES = (("abc-import", fix_abc_imports), ("abc-module", fix_abc_module),
         ("json-enc", fix_json_encoding))


def python_files(site):
    for pkg in PACKAGES:
        root = os.path.join(site, pkg)
        if not os.path.isdir(root):
            raise SystemExit("patch_ref: package %r not installed in %s" % (pkg, site))
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if d != "__pycache__"]
            for fn in sorted(filenames):
                if fn.endswith(".py"):
                    yield os.path.join(dirpath, fn)


def drop_bytecode(path):
    cache = os.path.join(os.path.dirname(path), "__pycache__")
    stem = os.path.splitext(os.path.basename(path))[0] + "."
    if os.path.isdir(cache):
        for fn in os.listdir(cache):
            if fn.startswith(stem):
                os.remove(os.path.join(cache, fn))


def patch(site):
    """Apply every rule to every file; return the list of (file, rule) changes made."""
    changes = []
    for path in python_files(site):
        with open(path, encoding="utf-8") as f:
            original = f.read()
        text = original
        for name, rule in RULES:
            new = rule(text)
            if new != text:
                changes.append((os.path.relpath(path, site), name))
                text = new
        if text != original:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
            drop_bytecode(path)
    return changes


VERIFY = r"""
import raet.road.stacking, raet.lane.stacking, raet.road.packeting as pk
from collections import OrderedDict
from raet.raeting import BodyKind
class FakePacket: data = {'bk': BodyKind.json.value}
body = pk.RxBody(packet=FakePacket())
body.packed = b'{"a":1,"b":"x"}'
body.parse()
assert body.data == OrderedDict([('a', 1), ('b', 'x')]), body.data
print("verified: raet.road, raet.lane import; json body parses")
"""


def main(argv):
    if len(argv) > 2 or (len(argv) == 2 and argv[1].startswith("-")):
        sys.stderr.write(__doc__)
        return 2
    site = argv[1] if len(argv) == 2 else sysconfig.get_paths()["purelib"]
    changes = patch(site)
    for rel, rule in changes:
        print("patched %-12s %s" % (rule, rel))
    if not changes:
        print("nothing to patch (already patched)")
    left = patch_dry(site)
    if left:
        print("rules still apply after patching: %s" % left, file=sys.stderr)
        return 1
    res = subprocess.run([sys.executable, "-c", VERIFY], cwd="/", capture_output=True, text=True)
    sys.stdout.write(res.stdout)
    if res.returncode != 0:
        sys.stderr.write("verification failed:\n" + res.stderr)
        return 1
    return 0


def patch_dry(site):
    """Files a rule would still change (must be none after a successful patch)."""
    left = []
    for path in python_files(site):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        left.extend((os.path.relpath(path, site), name) for name, rule in RULES if rule(text) != text)
    return left


if __name__ == "__main__":
    sys.exit(main(sys.argv))
