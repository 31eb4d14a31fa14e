"""The product's setup of the database replicas (hotsync_events/sync/replsetup.py, replchannel.py), every
branch with a scripted engine: what the master prepares and offers, when the slave seeds, re-points or
re-pairs, and the channel's files made from the pair's identities. The real servers go through the same
code in tests/test_replica_pairing.py."""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from hotsync_events import hookimpl
from hotsync_events.configdb import open_db
from hotsync_events.dbkit.replica import Link, MasterStatus, Position, Prepared, Repaired, ReplicaStatus
from hotsync_events.manager import get_plugin_manager, install_schemas
from hotsync_events.paths import Root
from hotsync_events.sync import reploffer, replsetup, tls
from hotsync_events.sync.replchannel import PairingError, channel_password, ensure_channel, leaf_subject
from hotsync_events.sync.status import read_status, update_status
from hotsync_events.types import Replica

D = "/var/lib/hotsync/replication/channel-fakedb"


class Engine:
    """A replication engine whose answers a test sets, recording every call."""

    engine = "fakedb"
    label = "FakeDB"

    def __init__(self, *, ships: bool = True) -> None:
        self.calls: list[tuple] = []
        self.ready, self.connected, self.needs_seed = True, False, False
        self.state = "not-configured"
        self.ships = ships
        self.repaired = Repaired(server="FakeDB", diverged=True, transactions=3, saved_to=None, method="seed",
                                 state="replica")

    def prepare_master(self, link, *, log=print):
        self.calls.append(("prepare", link))
        return Prepared(server="FakeDB", ready=self.ready, restart_needed=[] if self.ready else ["log_bin"])

    def master_status(self, link):
        return MasterStatus(server="FakeDB", role="master", replica_connected=self.connected,
                            needs_seed=self.needs_seed)

    def take_seed(self, target, *, log=print):
        self.calls.append(("take_seed", target))
        if not self.ships:
            return None
        target.write_bytes(b"seed")
        return target

    def status(self, link=None):
        return ReplicaStatus(server="FakeDB", role="replica", state=self.state, needs_seed=self.needs_seed)

    def seed(self, link, source=None, *, log=print, keep_previous=None):
        self.calls.append(("seed", source))
        self.kept = keep_previous
        self.state = "streaming"
        return Position("fakedb", "0-1-9")

    def configure_replica(self, link, *, log=print):
        self.calls.append(("configure", link))

    def repair(self, link, save_dir, takeover, *, seed=None, log=print):
        self.calls.append(("repair", takeover, seed))
        save_dir.mkdir(parents=True)
        self.state = "streaming"
        return Repaired(**{**self.repaired.__dict__, "saved_to": str(save_dir)})

    def names(self) -> list[str]:
        return [c[0] for c in self.calls]


class Plugin:
    def __init__(self, engine: Engine, link) -> None:
        self.engine, self.link = engine, link

    @hookimpl
    def hotsync_replicas(self, db, root):
        yield Replica(name="fakedb", engine=self.engine, link=self.link, key="fakedb")


def _host(root: Root, role: str, **props: str):
    install_schemas(get_plugin_manager(entrypoints=False), root)
    db = open_db("configuration", root)
    with db.transaction() as txn:
        txn.set("hotsync", "configuration", {"role": role, **props})
        txn.set("rsyncd", "service", {"password": "Pair-pass-1"})
        txn.set("fakedb", "service", {"DatabaseMode": "replica"})
    tls.ensure_host_cert(root, log=lambda m: None)
    return db


def _link(master: str, replica: str) -> Link:
    return Link(master_host=master, replica_host=replica, port=3306, password_file=f"{D}/password",
                cert=f"{D}/host.crt", key=f"{D}/host.key", peer_cert=f"{D}/peer.crt")


@pytest.fixture
def pair(tmp_path):
    m, s = Root(tmp_path / "m"), Root(tmp_path / "s")
    for r in (m, s):
        r.path.mkdir()
    mdb = _host(m, "master", SlaveHost="192.0.2.2")
    sdb = _host(s, "slave", MasterHost="192.0.2.1")
    scert, mcert = tls.cert_paths(s)[0].read_text(), tls.cert_paths(m)[0].read_text()
    tls.pin_slave(m, scert)
    assert tls.accept_master_cert(s, mcert.encode(), tls.fingerprint(mcert))
    return m, mdb, s, sdb


def _run(root: Root, db, engine: Engine, link: Link, *, said: list | None = None, **kw) -> dict:
    pm = get_plugin_manager(entrypoints=False)
    pm.register(Plugin(engine, link), name="fakedb")
    out = replsetup.setup(root, db=db, pm=pm, log=(said.append if said is not None else lambda m: None), **kw)
    assert out is not None
    return out["fakedb"]


def _ship(m: Root, s: Root) -> None:
    """What the push carries of the offers (the push succeeded)."""
    update_status(m, lambda d: d.update(last_run={"result": "success"}))
    src, dst = m.join(replsetup.SEED_DIR), s.join(replsetup.SEED_DIR)
    dst.mkdir(parents=True, exist_ok=True)
    for f in dst.iterdir():
        f.unlink()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())


MLINK, SLINK = _link("192.0.2.1", "192.0.2.2"), _link("192.0.2.1", "192.0.2.2")


# ------------------------------------------------------------------------------------------ the channel
def test_the_channel_is_made_from_the_pair_identities_and_follows_them(pair):
    m, _, s, _ = pair
    ch = ensure_channel(m, MLINK, "fakedb", "master", log=lambda x: None)
    own, peer = tls.cert_paths(m)[0], tls.pin_path(m)
    assert m.join(MLINK.peer_cert).read_bytes() == peer.read_bytes()
    assert subprocess.run(["openssl", "verify", "-CAfile", str(own), str(m.join(MLINK.cert))],
                          capture_output=True).returncode == 0
    assert os.stat(m.join(MLINK.password_file)).st_mode & 0o077 == 0
    assert os.stat(m.join(MLINK.key)).st_mode & 0o077 == 0
    # the subject the master requires is the one the slave's own certificate will have; the password is the
    # same on both hosts (ECDH of the two host keys), never shipped, one per engine
    sch = ensure_channel(s, SLINK, "fakedb", "slave", log=lambda x: None)
    from hotsync_events.dbkit.replica import subject_of

    assert ch.link.peer_subject == subject_of(s.join(SLINK.cert))
    assert sch.link.peer_subject == subject_of(m.join(MLINK.cert))
    pw = m.join(MLINK.password_file).read_text().strip()
    assert pw == s.join(SLINK.password_file).read_text().strip() and len(pw) == 43
    mkey, scert = tls.cert_paths(m)[1], tls.cert_paths(s)[0].read_bytes()
    assert channel_password(mkey, scert, "fakedb") == pw != channel_password(mkey, scert, "mariadb")
    # nothing changed: nothing made, the same digest; a new host identity: a new certificate and password
    again = ensure_channel(m, MLINK, "fakedb", "master", log=lambda x: None)
    assert again.made == () and again.digest == ch.digest
    before = m.join(MLINK.cert).read_bytes()
    for p in tls.cert_paths(m):
        p.unlink()
    tls.ensure_host_cert(m, log=lambda x: None)
    renewed = ensure_channel(m, MLINK, "fakedb", "master", log=lambda x: None)
    assert m.join(MLINK.cert).read_bytes() != before and any("certificate" in x for x in renewed.made)
    assert renewed.digest != ch.digest
    assert leaf_subject("SHA256:AB:CD", "hotsync_repl", "mariadb") == \
        "/O=hotsync/OU=replication mariadb abcd/CN=hotsync_repl"
    # the channel's directory must be root's own: a link planted there is refused, never followed
    d = m.join(MLINK.cert).parent
    import shutil

    shutil.rmtree(d)
    d.symlink_to(m.path)
    with pytest.raises(PairingError, match="not a directory of this host's HotSync"):
        ensure_channel(m, MLINK, "fakedb", "master")


def test_no_channel_before_the_pair_trusts_each_other(pair):
    m, _, s, _ = pair
    tls.pin_path(m).unlink()
    with pytest.raises(PairingError, match="hotsync sync"):
        ensure_channel(m, MLINK, "fakedb", "master")
    for f in tls.trusted_master_dir(s).glob("*.0"):
        f.unlink()
    with pytest.raises(PairingError, match="MasterFingerprint"):
        ensure_channel(s, SLINK, "fakedb", "slave")


# ------------------------------------------------------------------------------------------ master
def test_master_prepares_once_per_channel_and_offers_a_seed_until_the_replica_follows(pair):
    m, mdb, _, _ = pair
    e = Engine()
    rec = _run(m, mdb, e, MLINK)
    assert e.names() == ["prepare", "take_seed"] and not rec.get("error")
    seed, offer = reploffer.offer_paths(m, "fakedb")
    first = json.loads(offer.read_text())
    assert first["from"] == tls.host_fingerprint(m) and first["master"] == {"host": "192.0.2.1", "port": 3306}
    assert first["file"] is True and seed.read_bytes() == b"seed" and rec["seed"]["why"] == "new channel"
    assert "takeover" not in first
    # the replica has not connected yet, but an hour has not passed: nothing again
    e.calls.clear()
    _run(m, mdb, e, MLINK)
    assert e.names() == []
    # it follows: the seed that served is removed (the push removes it on the slave too)
    e.connected = True
    update_status(m, lambda d: d["replication_setup"]["replicas"]["fakedb"]["seed"].update(time=1.0))
    _run(m, mdb, e, MLINK)
    assert not seed.exists() and offer.exists()
    # a person asks for a new seed; later the replica is away for over an hour
    e.calls.clear()
    _run(m, mdb, e, MLINK, force_seed=True)
    assert e.names() == ["take_seed"] and json.loads(offer.read_text())["id"] != first["id"]
    e.connected, e.calls = False, []
    update_status(m, lambda d: d["replication_setup"]["replicas"]["fakedb"].update(connected=1.0, seed={
        **d["replication_setup"]["replicas"]["fakedb"]["seed"], "time": 1.0}))
    update_status(m, lambda d: d.update(last_run={"result": "failed"}))
    _run(m, mdb, e, MLINK)
    assert e.calls == []                            # the slave was not reached: no seed that would not reach it
    update_status(m, lambda d: d.update(last_run={"result": "success"}))
    assert _run(m, mdb, e, MLINK)["seed"]["why"] == "not connected"
    assert not list(m.join(reploffer.STAGING_DIR).iterdir())       # taken aside, then moved into place


def test_a_master_that_needs_a_restart_says_which_and_is_prepared_again(pair):
    m, mdb, _, _ = pair
    e = Engine()
    e.ready = False
    said: list[str] = []
    rec = _run(m, mdb, e, MLINK, said=said)
    assert "must be restarted" in rec["error"] and "log_bin" in rec["error"] and "take_seed" not in e.names()
    assert any("must be restarted" in line for line in said), said          # the sync's output says it
    e.ready, e.calls = True, []
    rec = _run(m, mdb, e, MLINK)
    assert e.names() == ["prepare", "take_seed"] and not rec.get("error")
    cp_status = read_status(m)["replication_setup"]["replicas"]["fakedb"]
    assert cp_status["prepared"] and cp_status["role"] == "master"


def test_an_engine_whose_replica_pulls_gets_an_offer_without_a_file(pair):
    m, mdb, s, sdb = pair
    e = Engine(ships=False)
    _run(m, mdb, e, MLINK)
    assert json.loads(reploffer.offer_paths(m, "fakedb")[1].read_text())["file"] is False
    assert not reploffer.offer_paths(m, "fakedb")[0].exists()
    _ship(m, s)
    r = Engine()
    _run(s, sdb, r, SLINK)
    assert r.calls == [("seed", None)]


# ------------------------------------------------------------------------------------------ slave
def test_slave_waits_for_an_offer_seeds_once_and_repoints_on_a_new_channel(pair):
    m, mdb, s, sdb = pair
    r = Engine()
    rec = _run(s, sdb, r, SLINK)
    assert "for the master's seed" in rec["waiting"] and r.calls == []
    _run(m, mdb, Engine(), MLINK)
    _ship(m, s)
    rec = _run(s, sdb, r, SLINK)
    assert r.calls == [("seed", reploffer.offer_paths(s, "fakedb")[0])] and rec["state"] == "streaming"
    assert rec["kept_previous"].startswith("before-replica-") and r.kept == rec["kept_previous"]
    r.calls.clear()
    _run(s, sdb, r, SLINK)
    assert r.calls == []                                        # streaming, same channel: nothing
    _run(s, sdb, r, _link("192.0.2.1", "192.0.2.9"))              # a new address: its certificate, re-pointed
    assert r.names() == ["configure"]
    # the master removes the seed that served: its offer still says where it listens, nothing is re-pointed
    reploffer.offer_paths(m, "fakedb")[0].unlink()
    _ship(m, s)
    r.calls.clear()
    _run(s, sdb, r, _link("192.0.2.1", "192.0.2.9"))
    assert r.calls == []
    # needs a re-seed, but the offer was used already: waits for a new one
    r.calls, r.needs_seed, r.state = [], True, "needs-seed"
    rec = _run(s, open_db("configuration", s), r, SLINK)
    assert r.calls == [] and "for the master's seed" in rec["waiting"]


def test_a_slave_whose_master_runs_dumps_says_so_and_what_to_set(pair):
    """The slave asks for a replica, the master's configuration (the peer copy its last push brought) keeps
    dumps: no seed will ever come, and the wait says which setting on which host ends it."""
    from hotsync_events.configdb.db import ConfigDB
    from hotsync_events.sync.lists import PEER_DIR

    _m, _mdb, s, sdb = pair
    peer = s.join(PEER_DIR)
    peer.mkdir(parents=True)
    copy = ConfigDB(peer / "configuration")
    with copy.transaction() as txn:
        txn.set("fakedb", "service", {"DatabaseMode": "dump"})
    rec = _run(s, sdb, Engine(), SLINK)
    assert "the master will not offer" in rec["waiting"], rec
    assert "fakedb DatabaseMode dump" in rec["waiting"] and "config setprop fakedb DatabaseMode replica" in rec["waiting"]
    with copy.transaction() as txn:
        txn.set("fakedb", "service", {"DatabaseMode": "replica"})
    rec = _run(s, sdb, Engine(), SLINK)
    assert "for the master's seed" in rec["waiting"], rec


def test_the_old_master_is_never_seeded_over_it_is_repaired_from_the_takeover(pair):
    m, mdb, s, sdb = pair
    update_status(s, lambda d: d.update(previous_master={"role": "master"},
                                        kept_by_repair={"path": "/var/lib/hotsync/kept/2026-12-05-060000"}))
    s.join("/var/lib/hotsync/kept/2026-12-05-060000").mkdir(parents=True)
    r = Engine()
    r.state = "master"
    _run(m, mdb, Engine(), MLINK)              # an offer without a takeover: this master was never promoted
    _ship(m, s)
    rec = _run(s, sdb, r, SLINK)
    assert r.calls == [] and "the position it took over at" in rec["waiting"]
    # the new master was promoted: its offer carries where it took over (from its promote's journal)
    journal = m.join("/var/lib/hotsync/sync/promote.json")
    journal.write_text(json.dumps({"replicas": {"fakedb": {"status": "success", "position": {
        "engine": "fakedb", "value": "0-1-42", "timeline": None}}}}))
    _run(m, mdb, Engine(), MLINK, force_seed=True)
    assert json.loads(reploffer.offer_paths(m, "fakedb")[1].read_text())["takeover"]["value"] == "0-1-42"
    _ship(m, s)
    rec = _run(s, sdb, r, SLINK)
    assert [c[0] for c in r.calls] == ["repair"] and r.calls[0][1] == Position("fakedb", "0-1-42")
    assert rec["saved_to"].startswith("/var/lib/hotsync/kept/2026-12-05-060000/") and rec["transactions"] == 3
    assert rec["repaired"] and not rec.get("waiting")
    from hotsync_events.sync.replicas import replica_lines, replica_status

    pm = get_plugin_manager(entrypoints=False)
    pm.register(Plugin(r, SLINK), name="fakedb")
    text = "\n".join(replica_lines(replica_status(s, sdb, "slave", pm=pm)))
    assert "re-paired" in text and "(3 transactions) is saved in /var/lib/hotsync/kept/2026-12-05-060000/" in text
    # from now on it is a replica like any other
    r.calls, r.needs_seed, r.state = [], True, "needs-seed"
    _run(m, mdb, Engine(), MLINK, force_seed=True)
    _ship(m, s)
    _run(s, sdb, r, SLINK)
    assert r.names() == ["seed"]


def test_an_offer_that_lands_during_the_slaves_setup_is_taken_in_by_that_run(pair):
    """A push that lands while the slave's setup runs finds its lock taken and starts nothing; what it brought
    (here the new master's takeover position, the re-pair's second push) is taken in when the run ends, not
    at some later push that may never come (the pairing test lost a PostgreSQL re-pair that way)."""
    m, mdb, s, sdb = pair
    update_status(s, lambda d: d.update(previous_master={"role": "master"},
                                        kept_by_repair={"path": "/var/lib/hotsync/kept/2026-12-05-060000"}))
    s.join("/var/lib/hotsync/kept/2026-12-05-060000").mkdir(parents=True)
    _run(m, mdb, Engine(), MLINK)              # the first offer: no takeover yet
    _ship(m, s)
    journal = m.join("/var/lib/hotsync/sync/promote.json")
    journal.write_text(json.dumps({"replicas": {"fakedb": {"status": "success", "position": {
        "engine": "fakedb", "value": "0-1-42", "timeline": None}}}}))

    class Landing(Engine):
        """The next push lands while this run reads the server's state."""

        def status(self, link=None):
            if not getattr(self, "landed", False):
                self.landed = True
                _run(m, mdb, Engine(), MLINK, force_seed=True)
                _ship(m, s)
            return super().status(link)

    r = Landing()
    r.state = "master"
    said: list[str] = []
    rec = _run(s, sdb, r, SLINK, said=said)
    assert [c[0] for c in r.calls] == ["repair"] and r.calls[0][1] == Position("fakedb", "0-1-42"), said
    assert rec["repaired"] and not rec.get("waiting")
    assert any("changed during the setup: once more" in line for line in said), said


def test_an_offer_is_untrusted_input_accepted_only_from_the_pinned_master(pair):
    m, _, s, _ = pair
    fp = tls.host_fingerprint(m)
    d = s.join(reploffer.SEED_DIR)
    d.mkdir(parents=True)
    good = {"id": "ab12", "time": 1, "file": False, "from": fp}
    (d / "fakedb.json").write_text(json.dumps(good))
    assert reploffer.read_offer(s, "fakedb", master_fp=fp)["id"] == "ab12"
    assert reploffer.read_offer(s, "fakedb", master_fp=tls.host_fingerprint(s)) is None     # another host's
    for bad in ({**good, "id": "../x"}, {**good, "time": "now"}, {**good, "file": 1}, "[]", "x" * 5000):
        (d / "fakedb.json").write_text(bad if isinstance(bad, str) else json.dumps(bad))
        assert reploffer.read_offer(s, "fakedb", master_fp=fp) is None, bad
    (d / "fakedb.json").write_text(json.dumps({**good, "takeover": {"engine": "fakedb", "value": "0-1-2; DROP"},
                                               "master": {"host": "a b", "port": 3306}}))
    offer = reploffer.read_offer(s, "fakedb", master_fp=fp)
    assert offer["takeover"] is None and offer["master"] is None
    # a link or a FIFO where the offer should be: not followed, not waited on
    (d / "fakedb.json").unlink()
    (d / "fakedb.json").symlink_to("/dev/zero")
    assert reploffer.read_offer(s, "fakedb", master_fp=fp) is None
    (d / "fakedb.json").unlink()
    os.mkfifo(d / "fakedb.json")
    assert reploffer.read_offer(s, "fakedb", master_fp=fp) is None
    (d / "fakedb.json").unlink()
    # a seed that is a link does not count as shipped
    (d / "fakedb.json").write_text(json.dumps({**good, "file": True}))
    (d / "fakedb.seed").symlink_to("/etc/passwd")
    assert reploffer.read_offer(s, "fakedb", master_fp=fp)["seed_ready"] is False


def test_a_fenced_host_sets_nothing_up(pair):
    m = pair[0]
    with open_db("configuration", m).transaction() as txn:
        txn.setprop("hotsync", {"status": "fenced"})
    pm = get_plugin_manager(entrypoints=False)
    pm.register(Plugin(Engine(), MLINK), name="fakedb")
    said: list[str] = []
    assert replsetup.setup(m, db=open_db("configuration", m), pm=pm, log=said.append) is None
    assert "not an enabled master or slave" in said[0] and not m.join(reploffer.SEED_DIR).exists()


def test_after_a_push_the_slave_starts_its_setup_only_when_something_changed(pair):
    _, _, s, _ = pair
    started: list = []
    assert replsetup.after_push(s, spawn=started.append) and "replicas" in started[0]
    update_status(s, lambda d: d.update(replication_setup={"inputs": replsetup.inputs_digest(s), "ok": True,
                                                           "last": 0}))
    assert not replsetup.after_push(s, spawn=started.append)
    update_status(s, lambda d: d["replication_setup"].update(ok=False))
    assert replsetup.after_push(s, spawn=started.append)            # failed a minute ago or more: again
    d = s.join(replsetup.SEED_DIR)
    d.mkdir(parents=True)
    (d / "fakedb.json").write_text("{}")
    update_status(s, lambda d: d["replication_setup"].update(ok=True))
    assert replsetup.after_push(s, spawn=started.append)            # a new offer arrived
    with open_db("configuration", s).transaction() as txn:
        txn.setprop("fakedb", {"DatabaseMode": "dump"})
    assert not replsetup.after_push(s, spawn=lambda a: pytest.fail("no replica wanted"))


def test_under_systemd_the_setup_gets_a_unit_of_its_own_and_is_never_started_twice(pair, monkeypatch):
    """The post-xfer hook runs in hotsync-stunnel.service, which every save event restarts: under the host's
    systemd the setup goes to a transient unit (systemd-run --no-block, the stunnel unit's hardening). Once
    systemd took the job (even when systemd-run did not answer in time), the hook starts no second one; when
    systemd-run refuses, the hook starts it itself and the log says why. (tests/test_replica_booted.py runs
    it on a real systemd.)"""
    import shutil
    import subprocess

    _, _, s, _ = pair
    ran: list[list[str]] = []

    def fake_run(cmd, **kw):
        ran.append(cmd)
        if answer == "timeout":
            raise subprocess.TimeoutExpired(cmd, 20)
        return subprocess.CompletedProcess(cmd, 0 if answer == "ok" else 1, "", "Failed to start: denied")

    monkeypatch.setattr(subprocess, "run", fake_run)
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    real_isdir = os.path.isdir
    monkeypatch.setattr(os.path, "isdir", lambda p: p == "/run/systemd/system" or real_isdir(p))
    argv = ["/opt/venvs/hotsync-events/bin/python", "-m", "hotsync_events.cli.hotsync", "replicas", "setup"]
    for answer in ("ok", "timeout"):
        unit, why = replsetup._own_unit(Root("/"), argv, "/var/log/hotsync/replicas.log")
        assert unit is not None and unit.startswith("hotsync-replicas-setup-") and unit.endswith(".service")
        cmd = ran[-1]
        assert cmd[:3] == ["systemd-run", "--quiet", "--no-block"] and cmd[-len(argv):] == argv
        assert "--property=NoNewPrivileges=yes" in cmd and "--property=WorkingDirectory=/run/hotsync" in cmd
        assert ("did not answer" in why) == (answer == "timeout")
    answer = "refused"
    assert replsetup._own_unit(Root("/"), argv, "/x.log")[0] is None
    assert replsetup._own_unit(s, argv, "/x.log") == (None, "")        # not the host's own root: no unit
    # the hook: a unit taken is the setup's, nothing else is started; the record names the unit
    monkeypatch.setattr(replsetup, "_own_unit", lambda root, argv, log: ("hotsync-replicas-setup-t.service",
                                                                       "systemd-run did not answer within 20 s"))
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **kw: pytest.fail("a second setup was started"))
    assert replsetup.after_push(s)
    rec = read_status(s)["replication_setup"]["started"]
    assert rec["unit"] == "hotsync-replicas-setup-t.service" and "pid" not in rec
    assert "did not answer" in s.join("/var/log/hotsync/replicas.log").read_text()


# ------------------------------------------------------------------------------------------ the guard
def test_the_guard_switches_a_waiting_replica_off_after_its_grace_and_on_once_it_streams_long_enough():
    from hotsync_events.sync.replguard import Watch, decide

    w = Watch()
    assert decide(w, 0, "on", True, grace=10, stable=30) is None
    assert decide(w, 1, "waiting", False, grace=10, stable=30) is None          # the replica went away
    assert decide(w, 10.9, "waiting", False, grace=10, stable=30) is None
    assert decide(w, 11, "waiting", False, grace=10, stable=30) == "off"
    assert decide(w, 12, "off", False, grace=10, stable=30) is None
    assert decide(w, 20, "off", True, grace=10, stable=30) is None              # back...
    assert decide(w, 30, "off", False, grace=10, stable=30) is None             # ...and gone again: from zero
    assert decide(w, 31, "off", True, grace=10, stable=30) is None
    assert decide(w, 60.9, "off", True, grace=10, stable=30) is None
    assert decide(w, 61, "off", True, grace=10, stable=30) == "on"
    # it falls behind again soon after: off again, and it must now stream twice as long before "on"
    assert decide(w, 70, "waiting", True, grace=10, stable=30) is None
    assert decide(w, 80, "waiting", True, grace=10, stable=30) == "off" and w.flaps == 1
    assert decide(w, 81, "off", True, grace=10, stable=30) is None              # streaming counts from now
    assert decide(w, 111, "off", True, grace=10, stable=30) is None
    assert decide(w, 141, "off", True, grace=10, stable=30) == "on"
    w = Watch()                                  # waiting that ends by itself (MariaDB came back): no switch
    assert decide(w, 0, "waiting", False, grace=10, stable=30) is None
    assert decide(w, 5, "on", True, grace=10, stable=30) is None
    assert decide(w, 12, "waiting", False, grace=10, stable=30) is None


def test_the_guard_runs_where_a_server_wants_synchronous_replication(tmp_path):
    import hotsync_plugins.hotsync as hs
    from hotsync_events.sync.replguard import sync_wanted

    db = open_db("configuration", Root(tmp_path))
    db.set("hotsync", "configuration", {"role": "master", "SlaveHost": "192.0.2.2"})
    db.set("rsyncd", "service", {"password": "Unit-test-1"})
    db.set("mysqld", "service", {"DatabaseMode": "replica", "ReplicationSync": "off"})
    guard = {s.name: s for s in hs.hotsync_services(db)}["hotsync-replica-guard"]
    assert not sync_wanted(db) and not guard.enabled and guard.command[-2:] == ("replicas", "guard")
    db.setprop("mysqld", {"ReplicationSync": "on"})
    assert sync_wanted(db) and {s.name: s for s in hs.hotsync_services(db)}["hotsync-replica-guard"].enabled
    db.setprop("hotsync", {"role": "slave"})
    assert not {s.name: s for s in hs.hotsync_services(db)}["hotsync-replica-guard"].enabled


def test_a_promote_waits_for_a_setup_in_progress_and_says_so_when_it_lasts(pair, monkeypatch):
    """A seed in progress has the server stopped and its data directory being swapped: the promote takes the
    replicas' setup lock first (bounded), and a setup that is still running fails the replica's promote with
    what to do, never promoting it half-seeded."""
    import threading

    from hotsync_events.sync import replicas

    _, _, s, sdb = pair
    monkeypatch.setattr(replicas, "PROMOTE_WAIT", 0.3)

    class Promotable(Engine):
        def promote(self, *, timeout=60.0, dry_run=False, force=False, log=print):
            from hotsync_events.dbkit.replica import Promoted

            self.calls.append(("promote",))
            return Promoted(server="FakeDB", dry_run=dry_run, position=Position("fakedb", "0-1-1"))

    e = Promotable()
    pm = get_plugin_manager(entrypoints=False)
    pm.register(Plugin(e, SLINK), name="fakedb")
    held, release = threading.Event(), threading.Event()

    def hold():
        with replsetup.setup_lock(s, wait=5) as got:
            assert got
            held.set()
            release.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    held.wait(5)
    errors: list[str] = []
    journal: dict = {}
    assert replicas.promote_replicas(s, sdb, pm, journal, err=errors.append, log=lambda x: None) == ["fakedb"]
    assert "setup still runs" in errors[0] and e.calls == [] and journal["fakedb"]["status"].startswith("failed")
    release.set()
    t.join()
    journal.clear()
    assert replicas.promote_replicas(s, sdb, pm, journal, err=errors.append, log=lambda x: None) == []
    assert e.names() == ["promote"] and journal["fakedb"]["status"] == "success"


# ------------------------------------------------------------------------------------------ the seed's swap
@pytest.mark.parametrize("inside", [False, True])
def test_a_seed_swaps_the_data_directory_beside_it_or_inside_a_mount_point(tmp_path, inside):
    """A data directory that is a mount point of its own cannot be renamed: the seed is staged inside it and
    the entries are moved; cut short at any move, the next seed puts the previous data back."""
    from hotsync_events.dbkit.replica_swap import SeedSwap

    cur = tmp_path / "mysql"
    cur.mkdir()
    (cur / "old.frm").write_text("old")
    (cur / "olddb").mkdir()
    places = SeedSwap(cur, cur / ".hotsync-seed-new", cur / ".hotsync-pre-seed", True) if inside else SeedSwap.of(cur)
    assert SeedSwap.of(cur).inside is False                       # tmp_path is no mount point
    said: list[str] = []

    def fresh_seed():
        places.prepare_new(None, 0o750)
        (places.new / "new.frm").write_text("new")

    def names():
        return sorted(p.name for p in cur.iterdir() if not p.name.startswith(".hotsync-"))

    fresh_seed()
    places.swap()
    assert names() == ["new.frm"] and (places.aside / "old.frm").read_text() == "old"
    places.put_back()                                             # the seed did not start
    assert names() == ["old.frm", "olddb"] and not places.aside.exists()
    fresh_seed()
    places.swap()
    kept = places.retire("before-replica-x", server="db", log=said.append)
    # beside the data directory; on its own volume, kept on it (never copied off: it could fill the root)
    assert kept == (cur / ".hotsync-before-replica-x" if inside else tmp_path / "mysql.before-replica-x")
    assert (kept / "old.frm").read_text() == "old"
    places.prepare_new(None, 0o750)
    places.aside.mkdir()                             # previous data an earlier seed never retired: refused
    with pytest.raises(OSError, match="holds the data an earlier seed set aside"):
        places.swap()
    places.aside.rmdir()
    assert names() == ["new.frm"] and "kept" in said[-1]
    if not inside:
        return
    # cut short while the previous data was moving aside (one entry copied there, its original still here):
    # the next seed's recover puts it back, the original kept over the partial copy
    (cur / "new.frm").unlink()
    (cur / "old.frm").write_text("old")
    (cur / "olddb").mkdir()
    fresh_seed()
    places.aside.mkdir()
    (places._phase).write_text("old")
    os.rename(cur / "olddb", places.aside / "olddb")
    (places.aside / "old.frm").write_text("partial")
    places.recover(server="db", log=said.append)
    assert names() == ["old.frm", "olddb"] and (cur / "old.frm").read_text() == "old"
    assert not places.aside.exists() and not places._phase.exists()
    # cut short while the seed was moving in: its entries go back to the staging directory
    places.aside.mkdir()
    places._phase.write_text("new")
    os.rename(cur / "old.frm", places.aside / "old.frm")
    os.rename(cur / "olddb", places.aside / "olddb")
    os.rename(places.new / "new.frm", cur / "new.frm")
    places.recover(server="db", log=said.append)
    assert names() == ["old.frm", "olddb"] and (places.new / "new.frm").exists() and not places.aside.exists()


def test_a_failed_seed_is_not_retried_from_the_same_offer_and_a_changed_seed_file_is_not_used(pair):
    m, mdb, s, sdb = pair
    _run(m, mdb, Engine(), MLINK)
    _ship(m, s)
    seed = reploffer.offer_paths(s, "fakedb")[0]
    seed.write_bytes(b"another push's seed")                   # not the file the offer describes
    r = Engine()
    rec = _run(s, sdb, r, SLINK)
    assert r.calls == [] and "not the one it describes" in rec["waiting"]
    _ship(m, s)

    class Failing(Engine):
        def seed(self, link, source=None, *, log=print, keep_previous=None):
            self.calls.append(("seed", source))
            raise OSError("disk full")

    f = Failing()
    rec = _run(s, sdb, f, SLINK)
    assert "disk full" in rec["error"] and f.names() == ["seed"]
    rec = _run(s, sdb, f, SLINK)                                  # the same offer: not again by itself
    assert f.names() == ["seed"] and "seeding from the last one failed" in rec["waiting"]
    _run(s, sdb, f, SLINK, force_seed=True)                       # a person asks: tried again
    assert f.names() == ["seed", "seed"]
    # an offer written by another host than the pinned master is named as such
    offer = reploffer.offer_paths(s, "fakedb")[1]
    offer.write_text(offer.read_text().replace(tls.host_fingerprint(m), tls.host_fingerprint(s)))
    assert "not one (another host's" in _run(s, sdb, Engine(), SLINK)["waiting"]


def test_the_slave_hooks_part_imports_with_the_standard_library_only():
    """after_push runs in the slave's hook server (python -I -S: the standard library and this package only,
    no virtualenv): what it imports must not need pluggy or the kit (the e2e test saw a seed never start)."""
    import sys

    from hotsync_events.sync.xfer import package_top

    code = (f"import sys; sys.path.insert(0, {package_top()!r}); from hotsync_events.sync.replsetup import after_push; "
            "print('pluggy' in sys.modules)")
    cp = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, timeout=60)
    assert cp.returncode == 0 and cp.stdout.strip() == "False", cp.stderr


def test_a_second_start_that_found_the_setup_running_does_not_make_the_first_look_dead(tmp_path):
    """Two pushes in a row can each start a setup before the first holds the lock: the second exits at once and
    its record is the last. While the first holds the lock (a seed takes hours) the status says nothing of a
    setup that "ended without a word"; once nothing holds it, it does."""
    import time

    from hotsync_events.sync.replicas import _setup_died

    root = Root(tmp_path)
    rec = {"started": {"time": time.time(), "pid": 2 ** 22 + 12345}, "last": 0}    # a pid that is gone
    assert replsetup.setup_running(root) is False                   # no lock file yet: nothing is created
    assert not root.run_dir.exists()
    with replsetup.setup_lock(root, wait=0) as had:
        assert had
        assert replsetup.setup_running(root) is True
        assert _setup_died(rec, root) is None
    assert "ended without a word" in (_setup_died(rec, root) or "")


def test_a_server_that_does_not_answer_is_reseeded_when_a_person_asks(pair):
    """A replica server left stopped (a re-pair whose rewind and re-seed failed, made unstartable): its status
    cannot be read. The setup reports that; `hotsync replicas setup --seed` seeds it anyway (the seed
    replaces its data directory), which is what the re-pair's message tells the person to run."""
    m, mdb, s, sdb = pair

    class Silent(Engine):
        def status(self, link=None):
            if self.state == "streaming":
                return super().status(link)
            raise OSError("PostgreSQL does not answer: connection refused")
    _run(m, mdb, Engine(), MLINK)
    _ship(m, s)
    r = Silent()
    rec = _run(s, sdb, r, SLINK)
    assert "does not answer" in rec["error"] and r.calls == []
    rec = _run(s, open_db("configuration", s), r, SLINK, force_seed=True)
    assert r.names() == ["seed"] and rec["state"] == "streaming" and not rec.get("error")
