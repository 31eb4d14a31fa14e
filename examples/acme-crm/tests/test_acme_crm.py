# Acme CRM through a master and a slave: the push, the dump, the promote (hotsync-events' fixtures).
import socket
import sqlite3

from hotsync_events.testing import write_tree

C, D = "/etc/acme-crm/crm.conf", "/var/lib/acme-crm/"


def test_sync_then_promote(hotsync_two_roots):
    two, master, slave = hotsync_two_roots, hotsync_two_roots.master, hotsync_two_roots.slave
    write_tree(master, {C: "x=1\nhostname=old\n", D + "data/a": "A", D + "data/cache/x": "", D + "data/b/a.tmp": ""})
    live = sqlite3.connect(master.join(D + "crm.sqlite"))         # left open in WAL mode: -wal and -shm exist
    live.executescript("PRAGMA journal_mode=WAL; CREATE TABLE c (n); INSERT INTO c VALUES (1), (2);")
    two.sync()
    assert slave.join(D + "data/a").read_text() == "A" and slave.join(C).exists()
    assert not [p for p in ("data/cache", "data/b/a.tmp", "crm.sqlite", "crm.sqlite-wal") if slave.join(D + p).exists()]
    two.promote()
    assert sqlite3.connect(slave.join(D + "crm.sqlite")).execute("SELECT count(*) FROM c").fetchone() == (2,)
    assert slave.join(C).read_text() == f"x=1\nhostname={socket.getfqdn()}\n"
    assert ("acme-crm", "start") in two.services


def test_inactive_without_etc_acme_crm(hotsync_two_roots):      # no /etc/acme-crm: nothing of ours is shipped
    write_tree(hotsync_two_roots.master, {D + "data/a": "A", D + "crm.sqlite": ""})
    hotsync_two_roots.sync()
    assert not hotsync_two_roots.slave.join(D).exists()
