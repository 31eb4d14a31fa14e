"""The notifier's trigger against a model of the trees it keeps equal (issue 20, whole directories).

A master tree changes at random (mkdir, writes, rm, rm -rf, a directory's mode, rm -rf and mkdir of the same
name), also while a push runs; each batch the trigger gives is applied to a model of the slave the way rsync
applies it (a listed name is copied with its missing parents; a directory of a recursive batch is copied whole,
names the master lacks under it removed; a listed name the master lacks is removed). After the changes stop and
the last batches ran, the slave must equal the master. Seeded, so a failure replays; bounded in runs and steps.
A directory kept apart for a plain batch of its own, then removed and made anew during the push, once left
its new contents off the slave until the next full sync: this finds it in a few dozen runs."""
from __future__ import annotations

import random

import pytest

from hotsync_events.realtime.debounce import Batch, Trigger

TOP = "/r"


def _under(path: str, d: str) -> bool:
    return path.startswith(d + "/")


class Pair:
    """A master tree, a slave tree (path -> (kind, version)), and a trigger fed as the notifier feeds it."""

    def __init__(self, seed: int, max_batch: int) -> None:
        self.rng = random.Random(seed)
        self.master: dict[str, tuple[str, int]] = {TOP: ("d", 0)}
        for i in range(3):
            self.master[f"{TOP}/old{i}"] = ("d", 0)
            for j in range(2):
                self.master[f"{TOP}/old{i}/f{j}"] = ("f", 0)
        self.slave = dict(self.master)
        self.now = 0.0
        self.trigger = Trigger(settle=0.0, max_batch=max_batch, clock=lambda: self.now, whole_dirs=True)
        self.version = 0
        self.journal: list[tuple] = []

    def _event(self, path: str, directory: str | None = None) -> None:
        self.journal.append(("event", path, directory))
        self.trigger.change(path, directory=directory)

    def _remove_tree(self, d: str) -> None:
        for path in sorted((p for p in self.master if _under(p, d)), key=lambda p: -p.count("/")):
            del self.master[path]
            self._event(path)
        del self.master[d]
        self._event(d)

    def change(self) -> None:
        rng, m = self.rng, self.master
        dirs = sorted(p for p, v in m.items() if v[0] == "d")
        files = sorted(p for p, v in m.items() if v[0] == "f")
        self.version += 1
        k = rng.random()
        d = rng.choice(dirs)
        if k < 0.25:                                            # mkdir
            name = f"{d}/n{self.version}"
            m[name] = ("d", self.version)
            self.journal.append(("mkdir", name))
            self._event(name, "new")
        elif k < 0.55:                                          # a file written (new or over an old one)
            name = rng.choice([f"{d}/f{self.version}", f"{d}/f0", f"{d}/f1"])
            if m.get(name, ("f",))[0] == "f":
                m[name] = ("f", self.version)
                self.journal.append(("write", name))
                self._event(name)
        elif k < 0.65 and files:                                # rm
            name = rng.choice(files)
            del m[name]
            self.journal.append(("rm", name))
            self._event(name)
        elif k < 0.75 and d != TOP:                             # rm -rf
            self.journal.append(("rm -rf", d))
            self._remove_tree(d)
        elif k < 0.85:                                          # chmod of a directory that existed
            m[d] = ("d", self.version)
            self.journal.append(("chmod", d))
            self._event(d, "old")
        elif d != TOP:                                          # rm -rf, then mkdir of the same name
            self.journal.append(("rm -rf; mkdir", d))
            self._remove_tree(d)
            m[d] = ("d", self.version)
            self._event(d, "new")

    def push(self, batch: Batch, seen: dict[str, tuple[str, int]]) -> None:
        """What rsync makes of *batch* on the slave, reading the master as *seen*."""
        s = self.slave
        if batch.paths is None:                                 # a full sync
            self.slave = dict(seen)
            return
        for path in batch.paths:
            if path not in seen:                                # gone on the master: --delete-missing-args
                for x in [x for x in s if _under(x, path)]:
                    del s[x]
                s.pop(path, None)
                continue
            up, missing = path.rsplit("/", 1)[0], []
            while up and up not in s:                           # --relative makes the missing parents
                missing.append(up)
                up = up.rsplit("/", 1)[0]
            for q in missing:
                s[q] = seen[q]
            if path in s and s[path][0] != seen[path][0]:
                for x in [x for x in s if _under(x, path)]:
                    del s[x]
            s[path] = seen[path]
            if seen[path][0] == "d" and batch.recursive:        # walked: its contents as the master has them
                for x in [x for x in s if _under(x, path) and x not in seen]:
                    del s[x]
                s.update((x, v) for x, v in seen.items() if _under(x, path))

    def run(self, steps: int = 60) -> None:
        rng = self.rng
        for _ in range(steps):
            for _ in range(rng.randint(0, 4)):
                self.change()
            self.now += 1
            batch = self.trigger.take()
            if batch is None:
                continue
            self.journal.append(("batch", batch.paths, batch.recursive))
            early = dict(self.master) if rng.random() < 0.5 else None     # rsync reads before or after ...
            for _ in range(rng.randint(0, 3)):                             # ... the changes during its push
                self.change()
            self.push(batch, early if early is not None else dict(self.master))
            self.trigger.finish(True)
        for _ in range(20):                                     # bounded: the last pushes, as at a clean stop
            self.now += 1
            batch = self.trigger.take(at_once=True)
            if batch is None:
                break
            self.journal.append(("batch", batch.paths, batch.recursive))
            self.push(batch, dict(self.master))
            self.trigger.finish(True)


@pytest.mark.parametrize("max_batch", [1000, 5])
def test_the_slave_equals_the_master_once_the_changes_stop(max_batch):
    for seed in range(400):
        pair = Pair(seed, max_batch)
        pair.run()
        assert not pair.trigger.pending, f"seed {seed}: changes left pending"
        if pair.slave != pair.master:
            diff = {k: (pair.master.get(k), pair.slave.get(k)) for k in sorted(set(pair.master) | set(pair.slave))
                    if pair.master.get(k) != pair.slave.get(k)}
            tail = "\n".join(map(str, pair.journal[-30:]))
            raise AssertionError(f"seed {seed}, max_batch {max_batch}: master -> slave differ {diff}\n{tail}")
