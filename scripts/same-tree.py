#!/usr/bin/env python3
"""same-tree.py MASTER SLAVE: whether two trees hold the same names, types, contents and link targets (exit 0),
else each difference (exit 1). A slave stores its links munged (/rsyncd-munged/<target>) until a promote writes
them back (docs/security.md): they compare as their targets."""
import os
import sys


def walk(top: str) -> dict:
    out = {}
    for d, dirs, files in os.walk(top):
        for n in dirs + files:
            p = os.path.join(d, n)
            r = os.path.relpath(p, top)
            if os.path.islink(p):
                out[r] = ("l", os.readlink(p).removeprefix("/rsyncd-munged/"))
            elif os.path.isdir(p):
                out[r] = ("d",)
            else:
                with open(p, "rb") as fh:
                    out[r] = ("f", fh.read())
    return out


a, b = walk(sys.argv[1]), walk(sys.argv[2])
for r in sorted(set(a) | set(b)):
    if a.get(r) != b.get(r):
        print(f"   differ: {r}")
sys.exit(0 if a == b else 1)
