"""The replica mode wired into the product: the setting, the plugins' declaration, ``hotsync status`` and the promote.

The core knows no engine: a plugin declares a :class:`~hotsync_events.types.Replica` (hook
``hotsync_replicas``) whose engine the status asks (state, connected, lag, last error) and the promote
promotes (the takeover position into its journal). First with a fake engine (fast, every branch), then
with the built-in ``mysql`` and ``postgresql`` plugins on real private servers (tests/replservers.py).
"""
from __future__ import annotations

import argparse
import json
import shutil

import pytest

from hotsync_events import hookimpl
from hotsync_events.configdb import open_db
from hotsync_events.dbkit.replica import Link, MasterStatus, Position, Prepared, Promoted, ReplicaStatus
from hotsync_events.manager import get_plugin_manager, install_schemas
from hotsync_events.paths import Root
from hotsync_events.promote.journal import read_journal
from hotsync_events.promote.run import Promote
from hotsync_events.sync.report import collect
from hotsync_events.types import Replica


class FakeEngine:
    engine = "fakedb"
    label = "FakeDB at /run/fake.sock"

    def __init__(self, *, lag: float = 2.5, error: str | None = None, needs_seed: bool = False) -> None:
        self.lag, self.error, self.needs_seed = lag, error, needs_seed
        self.promotes: list[dict] = []
        self.prepared: list = []
        self.replica_connected = True
        self.promote_error: str | None = None
        self.not_replica = False
        self.status_role = "replica"

    def status(self, link=None) -> ReplicaStatus:
        return ReplicaStatus(server=self.label, role=self.status_role, state="needs-seed" if self.needs_seed else
                             "error" if self.error else "streaming", connected=not self.error,
                             lag_seconds=self.lag, lag_bytes=4096, lag_transactions=3, last_error=self.error,
                             needs_seed=self.needs_seed)

    def master_status(self, link) -> MasterStatus:
        return MasterStatus(server=self.label, role="master", replica_connected=self.replica_connected,
                            replica_state="streaming" if self.replica_connected else None, position="0-1-42",
                            lag_bytes=0, lag_seconds=self.lag)

    def promote(self, *, timeout=60.0, dry_run=False, force=False, log=print) -> Promoted:
        self.promotes.append({"timeout": timeout, "dry_run": dry_run, "force": force})
        if self.promote_error and not dry_run:
            raise RuntimeError(self.promote_error)
        if self.not_replica:
            return Promoted(server=self.label, dry_run=dry_run, position=Position("fakedb", "0-1-50"),
                            notes=["nothing to promote"], already_master=True)
        return Promoted(server=self.label, dry_run=dry_run, position=Position("fakedb", "0-1-42"),
                        lag_seconds=self.lag, not_applied="3 transaction(s)", would_lose="nothing known",
                        notes=[] if dry_run else ["caught up"])


    def prepare_master(self, link, *, log=print) -> Prepared:
        self.prepared.append(link)
        return Prepared(server=self.label, ready=True)


class FakePlugin:
    def __init__(self, engine: FakeEngine, link=None, master_link=None) -> None:
        self.engine, self.link, self.master_link = engine, link, master_link

    @hookimpl
    def hotsync_replicas(self, db, root):
        if getattr(self.engine, "hook_error", None):
            raise OSError(self.engine.hook_error)
        yield Replica(name="fakedb", engine=self.engine, link=self.link, promote_timeout=7.0,
                      master_link=self.master_link)


def _configure(root: Root, role: str, **hotsync: str) -> None:
    install_schemas(get_plugin_manager(entrypoints=False), root)
    db = open_db("configuration", root)
    with db.transaction() as txn:
        txn.set("hotsync", "configuration", {"role": role, **hotsync})
        txn.set("fakedb", "service", {"DatabaseMode": "replica"})


@pytest.fixture
def fake(root, monkeypatch):
    engine = FakeEngine()
    pm = get_plugin_manager(entrypoints=False)
    pm.register(FakePlugin(engine), name="fakedb")
    pm.root = root
    monkeypatch.setattr("hotsync_events.manager.plugin_manager", lambda r: pm)
    return engine, pm


def _status(root: Root, capsys, *, as_json: bool = False) -> str:
    from hotsync_events.cli.cmd_status import run

    assert run(argparse.Namespace(root=str(root.path), json=as_json, check=False, prometheus=False)) == 0
    return capsys.readouterr().out


def test_replica_status_text_and_json_show_state_lag_and_last_error(root, fake, capsys):
    engine, _ = fake
    _configure(root, "slave", MasterHost="192.0.2.1")
    text = _status(root, capsys)
    assert "database fakedb:" in text and "fakedb replica of the master's: streaming, connected" in text
    assert "lag 2.5 s, 4096 bytes, 3 transactions" in text
    info = json.loads(_status(root, capsys, as_json=True))
    [rep] = info["replicas"]
    assert rep["name"] == "fakedb" and rep["side"] == "replica" and rep["connected"] is True
    assert (rep["lag_seconds"], rep["lag_bytes"], rep["lag_transactions"], rep["last_error"]) == (2.5, 4096, 3, None)
    # broken replication: the error is shown and the health goes critical
    engine.error = "the master refused the replication login: Access denied"
    text = _status(root, capsys)
    assert "NOT connected" in text and "last error: the master refused the replication login" in text
    info = json.loads(_status(root, capsys, as_json=True))
    assert info["health"]["state"] == "critical"
    assert any("database replica fakedb" in r for r in info["health"]["reasons"])
    # lagging: a warning
    engine.error, engine.lag = None, 600.0
    info = json.loads(_status(root, capsys, as_json=True))
    assert any("lags 600 s" in r for r in info["health"]["reasons"])
    from hotsync_events.cli.cmd_status import run

    assert run(argparse.Namespace(root=str(root.path), json=False, check=False, prometheus=True)) == 0
    prom = capsys.readouterr().out
    assert 'hotsync_replica_lag_seconds{name="fakedb",engine="fakedb"} 600.0' in prom
    assert 'hotsync_replica_connected{name="fakedb",engine="fakedb"} 1' in prom


def test_master_side_status_and_no_replica_wanted_loads_no_plugin(root, fake, capsys, monkeypatch):
    engine, pm = fake
    pm.unregister(name="fakedb")
    link = Link(master_host="192.0.2.1", replica_host="192.0.2.2", port=3306, password_file="/p", cert="/c",
                key="/k", peer_cert="/pc")
    pm.register(FakePlugin(engine, link), name="fakedb")
    _configure(root, "master", SlaveHost="192.0.2.2")
    [rep] = json.loads(_status(root, capsys, as_json=True))["replicas"]
    assert rep["side"] == "master" and rep["connected"] and rep["position"] == "0-1-42" and rep["lag_bytes"] == 0
    assert "fakedb master of the slave's: streaming, connected, lag 2.5 s, 0 bytes" in _status(root, capsys)
    db = open_db("configuration", root)
    with db.transaction() as txn:
        txn.setprop("fakedb", {"DatabaseMode": "dump"})
    monkeypatch.setattr("hotsync_events.manager.plugin_manager", lambda r: pytest.fail("plugins loaded"))
    assert "replicas" not in json.loads(_status(root, capsys, as_json=True))


LINK = Link(master_host="192.0.2.1", replica_host="192.0.2.2", port=3306, password_file="/p", cert="/c", key="/k",
            peer_cert="/pc")


def test_one_mail_when_replication_breaks_and_one_when_it_works_again(root, fake, smtp):
    from hotsync_events.sync.replicas import alert_replicas
    from hotsync_events.sync.settings import Settings

    engine, pm = fake
    pm.unregister(name="fakedb")
    pm.register(FakePlugin(engine, LINK), name="fakedb")
    _configure(root, "master", SlaveHost="192.0.2.2", MailTo="ops@example.org", SmartHost=f"127.0.0.1:{smtp.port}")
    db = open_db("configuration", root)
    cfg = Settings.from_db(db)
    assert alert_replicas(root, db, cfg, pm=pm, log=lambda m: None)["current"] == [] and smtp.messages == []
    engine.replica_connected = False
    state = alert_replicas(root, db, cfg, pm=pm, log=lambda m: None)
    assert state["sent"] and "database replica fakedb is not connected" in state["reasons"][0]
    alert_replicas(root, db, cfg, pm=pm, log=lambda m: None)         # still broken: no second mail
    [mail] = smtp.messages
    assert "BROKEN" in mail["Subject"] and "not connected" in mail.get_payload()
    engine.replica_connected = True
    assert not alert_replicas(root, db, cfg, pm=pm, log=lambda m: None)["sent"]
    assert len(smtp.messages) == 2 and "works again" in smtp.messages[1]["Subject"]
    assert "lag" in smtp.messages[1].get_payload()
    engine.lag = 400.0                              # connected, but far behind: mailed like a break
    assert "lags 400 s behind" in alert_replicas(root, db, cfg, pm=pm, log=lambda m: None)["reasons"][0]
    engine.lag = 1.0
    assert not alert_replicas(root, db, cfg, pm=pm, log=lambda m: None)["sent"] and len(smtp.messages) == 4


def test_a_replica_that_already_followed_when_hotsync_took_it_over_is_watched_too(root, fake, smtp, monkeypatch):
    """A slave's server that was already a replica needs no seed: the setup only configures it. Its break is
    still a break (it was never a first seed in progress)."""
    from hotsync_events.cli.cmd_replicas import run
    from hotsync_events.sync import replicas
    from hotsync_events.sync.status import update_status

    engine, _ = fake
    _configure(root, "slave", MasterHost="192.0.2.1", MailTo="ops@example.org", SmartHost=f"127.0.0.1:{smtp.port}")
    clock = [1000.0]
    real = replicas.alert_replicas
    monkeypatch.setattr(replicas, "alert_replicas", lambda *a, **kw: real(*a, **kw, now=clock[0]))
    update_status(root, lambda d: d.update(replication_setup={
        "replicas": {"fakedb": {"role": "slave", "configured": "0123abcd"}}}))
    engine.error = "Lost connection to the master"
    for _ in range(2):
        clock[0] += 300
        assert run(argparse.Namespace(root=str(root.path), action="check", quiet=True)) == 1
    assert len(smtp.messages) == 1 and "BROKEN" in smtp.messages[0]["Subject"]


def test_the_slave_mails_when_its_replicas_stop_following_the_master(root, fake, smtp, capsys, monkeypatch):
    """A master that died mails nothing: its slave looks every 5 minutes (cron: hotsync replicas check) and
    mails once when its replicas stop following (seen at two looks, so a master's restart is no alert), once
    when they follow again; a replica being seeded for the first time is not broken; a state the host wrote
    as a master (before a re-pair) says nothing about its replicas as a slave."""
    from hotsync_events.cli.cmd_replicas import run
    from hotsync_events.sync import replicas
    from hotsync_events.sync.status import update_status
    from sync_pair import cli

    engine, _ = fake
    _configure(root, "slave", MasterHost="192.0.2.1", MailTo="ops@example.org", SmartHost=f"127.0.0.1:{smtp.port}")
    clock = [1000.0]
    real = replicas.alert_replicas
    monkeypatch.setattr(replicas, "alert_replicas", lambda *a, **kw: real(*a, **kw, now=clock[0]))

    def check(after: float = 300.0) -> int:
        clock[0] += after
        return run(argparse.Namespace(root=str(root.path), action="check", quiet=False))

    # as a master (before a re-pair) it had mailed a break; its record of the replica is a master's
    update_status(root, lambda d: d.update(replica_alert={"sent": True, "reasons": ["x"]}, replication_setup={
        "replicas": {"fakedb": {"role": "master", "connected": 1.0}}}))
    engine.error = "Lost connection to the master"
    assert check() == 0 and smtp.messages == []           # never followed as a slave: being set up, not broken
    update_status(root, lambda d: d["replication_setup"]["replicas"]["fakedb"].update(role="slave", seeded=1.0))
    assert check() == 1 and smtp.messages == []           # seen once: a master's restart looks the same
    engine.error = None
    assert check() == 0 and smtp.messages == []           # gone by the next look: no mail
    engine.error = "Lost connection to the master"
    assert check() == 1 and check(60) == 1 and smtp.messages == []   # 60 s apart: still within the grace
    assert check() == 1
    [mail] = smtp.messages
    assert "to " in mail["Subject"] and "from its master is BROKEN" in mail["Subject"], mail["Subject"]
    body = mail.get_payload(decode=True).decode()
    assert "192.0.2.1" in body and "Lost connection to the master" in body and "hotsync-promote --dry-run" in body
    assert check() == 1 and len(smtp.messages) == 1          # still broken: no second mail
    assert "hotsync replicas check: database replica fakedb: Lost connection" in capsys.readouterr().out
    engine.error = None
    assert check() == 0 and len(smtp.messages) == 2 and "works again" in smtp.messages[1]["Subject"]
    # the slave's cron runs it; a master's sync does it after each run, so its cron has no such line
    cp = cli("expand-template", "/etc/cron.d/hotsync", root=root.path)
    assert cp.returncode == 0, cp.stderr
    text = (root.path / "etc/cron.d/hotsync").read_text()
    assert "*/5 * * * * root " in text and "replicas check" in text, text
    with open_db("configuration", root).transaction() as txn:
        txn.setprop("hotsync", {"role": "master", "SlaveHost": "192.0.2.2"})
    assert cli("expand-template", "/etc/cron.d/hotsync", root=root.path).returncode == 0
    assert "replicas check" not in (root.path / "etc/cron.d/hotsync").read_text()


def test_promote_promotes_each_replica_and_journals_its_takeover_position(root, fake):
    engine, pm = fake
    _configure(root, "slave", MasterHost="192.0.2.1")
    logs: list[str] = []
    p = Promote(root, {}, pm=pm, log=logs.append)
    p.do_databases()
    assert engine.promotes == [{"timeout": 7.0, "dry_run": False, "force": False}]
    entry = read_journal(root)["replicas"]["fakedb"]
    assert entry["status"] == "success" and entry["position"] == {"engine": "fakedb", "value": "0-1-42",
                                                                  "timeline": None}
    assert any("promoted at 0-1-42" in m for m in logs)
    Promote(root, {"resuming": True, "journal": read_journal(root)}, pm=pm, log=logs.append).do_databases()
    assert len(engine.promotes) == 1          # a resumed promote does not promote twice
    assert engine.prepared == [] and "prepared" not in entry       # no channel configured: nothing prepared


def test_a_replica_that_does_not_take_over_stops_the_promote_before_the_backups_and_the_role(root, fake):
    """Its backup loaded over it would throw away what the replica holds and the backup does not: the promote
    stops (exit 4) with the databases phase not done; run again once the cause is fixed, it resumes and
    promotes; --force restores the backup instead (a person's choice, told the cost)."""
    from hotsync_events import promote
    from hotsync_events.promote.run import EXIT_CRITICAL
    from test_promote_unit import _slave

    engine, pm = fake
    _slave(root, received_ago=3600)
    open_db("configuration", root).set("fakedb", "service", {"DatabaseMode": "replica"})
    engine.promote_error = "the master is still connected to this replica: it is alive"
    said: list[str] = []
    p = Promote(root, promote.assess(root), pm=pm, log=said.append)
    assert p.run() == EXIT_CRITICAL
    j = read_journal(root)
    assert "databases" not in j["done"] and "role" not in j["done"] and j["dbs"] == {}
    assert j["replicas"]["fakedb"]["status"].startswith("failed: the master is still connected")
    assert any("STOPPED before the role changes" in m and "hotsync-promote --force" in m for m in said), said
    with pytest.raises(Exception, match="did not take over"):
        Promote(root, {"resuming": True, "journal": read_journal(root)}, pm=pm, log=said.append).do_databases()
    engine.promote_error = None                 # the cause fixed: the next run resumes and promotes
    Promote(root, {"resuming": True, "journal": read_journal(root)}, pm=pm, log=said.append).do_databases()
    assert read_journal(root)["replicas"]["fakedb"]["status"] == "success"


def test_with_force_a_replica_that_cannot_take_over_lets_the_promote_go_on(root, fake):
    engine, pm = fake
    _configure(root, "slave", MasterHost="192.0.2.1")
    engine.promote_error = "its data directory is gone"
    said: list[str] = []
    Promote(root, {}, pm=pm, force=True, log=said.append).do_databases()     # no exception: it goes on
    assert engine.promotes[-1]["force"] is True
    assert any("--force: their backups are restored instead" in m for m in said), said


def test_a_plugin_that_cannot_say_its_replicas_stops_the_promote(root, fake):
    _engine, pm = fake

    class Broken:
        @hookimpl
        def hotsync_replicas(self, db, root):
            raise OSError("its configuration is unreadable")
    pm.register(Broken(), name="brokendb")
    _configure(root, "slave", MasterHost="192.0.2.1")
    with pytest.raises(Exception, match=r"\(brokendb\).*its configuration is unreadable"):
        Promote(root, {}, pm=pm, log=lambda m: None).do_databases()


def test_a_plugin_whose_detect_fails_stops_the_promote_too(root, fake):
    """A plugin whose hotsync_detect raises is inactive, so its hotsync_replicas is never asked: its replicas
    would stay read-only replicas under a promote that said it succeeded. The promote stops and names it; a
    plugin that declares no replica is not held against the promote."""
    _engine, pm = fake

    class Blind:
        @hookimpl
        def hotsync_detect(self, db, root):
            raise OSError("cannot read /etc/blind.conf")

        @hookimpl
        def hotsync_replicas(self, db, root):
            raise AssertionError("an inactive plugin is not asked")

    class NoReplicas:
        @hookimpl
        def hotsync_detect(self, db, root):
            raise OSError("cannot read /etc/other.conf")

    pm.register(Blind(), name="blinddb")
    pm.register(NoReplicas(), name="otherapp")
    _configure(root, "slave", MasterHost="192.0.2.1")
    with pytest.raises(Exception, match=r"\(blinddb\).*hotsync_detect hook failed.*cannot read /etc/blind.conf"):
        Promote(root, {}, pm=pm, log=lambda m: None).do_databases()
    recs = read_journal(root)["replicas"]
    assert "(blinddb)" in recs and "(otherapp)" not in recs
    assert recs["fakedb"]["status"] == "success"
    from hotsync_events.sync.replicas import replica_status

    shown = {e["name"]: e for e in replica_status(root, open_db("configuration", root), "slave", pm=pm)}
    assert shown["(blinddb)"]["state"] == "error" and "(otherapp)" not in shown


def test_a_hook_error_of_an_earlier_run_or_look_does_not_stop_a_promote_for_good(root, fake):
    """A plugin whose hook failed at one run (or at the assessment's look, in the same process) and works at
    the next: the next run promotes, the earlier failure is not held against it."""
    _engine, pm = fake
    flaky = {"fail": True}

    class Flaky:
        @hookimpl
        def hotsync_replicas(self, db, root):
            if flaky["fail"]:
                raise OSError("its configuration is unreadable")
            return []
    pm.register(Flaky(), name="flakydb")
    _configure(root, "slave", MasterHost="192.0.2.1")
    with pytest.raises(Exception, match="flakydb"):
        Promote(root, {}, pm=pm, log=lambda m: None).do_databases()
    assert "(flakydb)" in read_journal(root)["replicas"]
    flaky["fail"] = False                          # mended; pm.hook_errors still holds the old error
    Promote(root, {"resuming": True, "journal": read_journal(root)}, pm=pm, log=lambda m: None).do_databases()
    assert "(flakydb)" not in read_journal(root)["replicas"]
    assert read_journal(root)["replicas"]["fakedb"]["status"] == "success"


def test_an_attempt_is_never_forgotten_because_its_plugin_failed_at_a_later_run(root, fake):
    """A run began a replica's promote and was killed; at the next run its plugin cannot say its replicas:
    the attempt's record stays (it may have taken the server over), so the run after that knows to keep the
    server's data rather than restore the backup over it."""
    engine, pm = fake
    _configure(root, "slave", MasterHost="192.0.2.1")
    p = Promote(root, {}, pm=pm, log=lambda m: None)
    p.j["replicas"] = {"fakedb": {"status": "promoting", "engine": "fakedb", "attempted": True, "was_replica": True}}
    p._save()
    engine.hook_error = "its configuration is unreadable"
    with pytest.raises(Exception, match="fakedb"):
        Promote(root, {"resuming": True, "journal": read_journal(root)}, pm=pm, log=lambda m: None).do_databases()
    assert read_journal(root)["replicas"]["fakedb"]["was_replica"] is True
    engine.hook_error, engine.not_replica, engine.status_role = None, True, "master"
    Promote(root, {"resuming": True, "journal": read_journal(root)}, pm=pm, log=lambda m: None).do_databases()
    assert read_journal(root)["replicas"]["fakedb"]["resumed"] is True


def test_a_replica_whose_state_could_not_be_read_when_its_attempt_began_counts_as_taken_over(root, fake):
    """Unknown then (its status failed: a slow look at the dead master) counts as a replica: a backup not
    restored is kept and said; one restored over a server that took over destroys what the backup lacks."""
    from hotsync_events.sync.replicas import promote_replicas

    engine, pm = fake
    _configure(root, "slave", MasterHost="192.0.2.1")
    journal = {"fakedb": {"status": "failed: timed out", "engine": "fakedb", "attempted": True,
                          "was_replica": None}}
    engine.not_replica, engine.status_role = True, "master"
    promote_replicas(root, open_db("configuration", root), pm, journal, log=lambda m: None)
    assert journal["fakedb"]["resumed"] is True


def test_a_promote_stopped_after_the_engine_took_over_is_resumed_as_taken_over(root, fake):
    """Killed after the engine promoted but before the journal said so: the next run finds the server "not a
    replica". The journal's mark of the attempt tells it took over (its backup is not loaded over it)."""
    engine, pm = fake
    _configure(root, "slave", MasterHost="192.0.2.1")
    p = Promote(root, {}, pm=pm, log=lambda m: None)
    p.j["replicas"] = {"fakedb": {"status": "promoting", "engine": "fakedb", "attempted": True, "was_replica": True}}
    p._save()
    engine.not_replica = True
    Promote(root, {"resuming": True, "journal": read_journal(root)}, pm=pm, log=lambda m: None).do_databases()
    entry = read_journal(root)["replicas"]["fakedb"]
    assert entry["status"] == "success" and entry["resumed"] is True
    # a server that never was a replica (no earlier attempt) is not "resumed": its backup is what it gets
    fresh: dict = {}
    from hotsync_events.sync.replicas import promote_replicas
    promote_replicas(root, open_db("configuration", root), pm, fresh, log=lambda m: None)
    assert fresh["fakedb"]["resumed"] is False
    # nor one whose earlier attempt failed before it acted, on a server that was no replica then (down,
    # never seeded): "not a replica" now says nothing of a takeover
    failed_before = {"fakedb": {"status": "failed: its server is down", "engine": "fakedb", "attempted": True,
                                "was_replica": False}}
    engine.status_role = "standalone"
    promote_replicas(root, open_db("configuration", root), pm, failed_before, log=lambda m: None)
    assert failed_before["fakedb"]["status"] == "success" and failed_before["fakedb"]["resumed"] is False


def test_the_promoted_replica_is_prepared_as_the_master_of_the_old_master(root, fake):
    engine, pm = fake
    pm.unregister(name="fakedb")
    new = Link(master_host="192.0.2.2", replica_host="192.0.2.1", port=3306, password_file="/p", cert="/c",
               key="/k", peer_cert="/pc")
    pm.register(FakePlugin(engine, master_link=new), name="fakedb")
    _configure(root, "slave", MasterHost="192.0.2.1")
    Promote(root, {}, pm=pm, log=lambda m: None).do_databases()
    assert engine.prepared == [new]
    assert read_journal(root)["replicas"]["fakedb"]["prepared"] == {"ready": True, "restart_needed": []}


def test_promote_dry_run_shows_the_replicas_lag_and_what_would_be_lost(root, fake):
    from hotsync_events.sync.replicas import promote_replicas

    engine, pm = fake
    _configure(root, "slave", MasterHost="192.0.2.1")
    lines: list[str] = []
    journal: dict = {}
    promote_replicas(root, open_db("configuration", root), pm, journal, dry_run=True, log=lines.append)
    assert engine.promotes[0]["dry_run"] and journal == {}
    assert lines == ["database replica fakedb: would take over at 0-1-42; lag 2.5 s; not applied yet: "
                     "3 transaction(s); would lose: nothing known"]


def test_cli_dry_run_asks_each_replica_and_says_why_it_cannot(root, run):
    """``hotsync-promote --dry-run`` asks the built-in mysql plugin's replica (its server is down here: the
    dry run says so, changes nothing and still exits 0)."""
    from test_promote_unit import _slave

    _slave(root, received_ago=3600)
    root.join("/var/lib/mysql").mkdir(parents=True)
    open_db("configuration", root).set("mysqld", "service",
                                       {"DatabaseMode": "replica", "Socket": "/run/none/mysqld.sock"})
    cp = run("hotsync-promote", "--dry-run", "--json", "--root", str(root))
    assert cp.returncode == 0, cp.stderr
    out = json.loads(cp.stdout)
    [line] = out["replicas"]
    assert line.startswith("database replica mysql (plugin mysql): FAILED: MariaDB at /run/none/mysqld.sock")
    assert out["assessment"]["replicas"] == [{"name": "mysql", "plugin": "mysql", "engine": "mariadb"}]
    assert "databases: promote the mariadb replica mysql (mysql: replay what it received" in cp.stderr
    assert line in cp.stderr and read_journal(root) is None


def test_the_host_servers_declare_a_replica_instead_of_a_dump_in_replica_mode(root):
    from hotsync_events.sync.databases import collect_dumps
    from hotsync_events.sync.replicas import collect_replicas

    pm = get_plugin_manager(entrypoints=False)
    install_schemas(pm, root)
    for d in ("/var/lib/mysql", "/var/lib/postgresql"):
        root.join(d).mkdir(parents=True)
    db = open_db("configuration", root)
    with db.transaction() as txn:
        txn.set("hotsync", "configuration", {"role": "slave", "MasterHost": "192.0.2.1"})
        txn.set("mysqld", "service", {"DatabaseMode": "replica", "ReplicationAddress": "192.0.2.2"})
        txn.set("postgresql", "service", {"DatabaseMode": "dump"})
    # the replicated server's dump is a backup beside it (never restored by the promote); the other a dump
    assert {d.name: d.at_promote for _, d in collect_dumps(pm, db, root)} == {"mysql": False, "postgresql": True}
    [(plugin, rep)] = collect_replicas(pm, db, root)
    assert plugin == "mysql" and rep.name == "mysql" and rep.engine.engine == "mariadb"
    assert (rep.link.master_host, rep.link.replica_host, rep.link.port) == ("192.0.2.1", "192.0.2.2", 3306)
    assert rep.link.peer_cert == "/var/lib/hotsync/replication/channel-mariadb/peer.crt" and not rep.link.synchronous
    assert (rep.master_link.master_host, rep.master_link.replica_host) == ("192.0.2.2", "192.0.2.1")
    with db.transaction() as txn:
        txn.setprop("postgresql", {"DatabaseMode": "replica", "SlotKeepMB": "256"})
        txn.delprop("mysqld", "ReplicationAddress")
        txn.setprop("mysqld", {"ReplicaDumps": "off"})
    reps = {r.name: r for _, r in collect_replicas(pm, db, root)}
    assert [d.name for _, d in collect_dumps(pm, db, root)] == ["postgresql"] and reps["mysql"].link is None
    with db.transaction() as txn:
        txn.setprop("postgresql", {"ReplicaDumps": "off"})
    assert collect_dumps(pm, db, root) == []
    assert reps["postgresql"].engine.slot_keep_mb == 256 and reps["postgresql"].link is None


# ------------------------------------------------------------------------------------------ real servers
@pytest.mark.parametrize("engine", ["mariadb", "postgresql"])
def test_real_replica_status_and_promote_through_the_plugins(engine):
    """The built-in plugin of each engine declares the slave's server as a replica: ``hotsync status`` shows
    it streaming with its lag, the promote promotes it and journals the GTID or LSN it took over at."""
    from dbservers import PG_BIN, new_root
    from replservers import MariaDBNode, PostgresNode, ReplPair, create_bank, ledger

    if engine == "mariadb" and (shutil.which("mariadb-backup") is None or shutil.which("mariadbd") is None):
        pytest.skip("needs mariadb-server and mariadb-backup")
    if engine == "postgresql" and not (PG_BIN / "pg_rewind").exists():
        pytest.skip("needs postgresql")
    node = MariaDBNode if engine == "mariadb" else PostgresNode
    a = node(new_root("hsri-a-"), "127.0.0.2").start().configure()
    b = node(new_root("hsri-b-"), "127.0.0.3").start().configure()
    pair = ReplPair(a, b)
    try:
        create_bank(a)
        pair.streaming(a.root.join("/var/lib/hotsync/dumps/seed") if engine == "mariadb" else None)
        key = "mysqld" if engine == "mariadb" else "postgresql"
        db = open_db("configuration", b.root)
        with db.transaction() as txn:
            txn.set("hotsync", "configuration", {"role": "slave", "MasterHost": a.address})
            txn.setprop(key, {"DatabaseMode": "replica"})
        if engine == "mariadb":
            a.sql("INSERT INTO ledger VALUES (1, NOW(6))", "bank")
        else:
            a.sql("INSERT INTO ledger VALUES (1, now())")
        assert pair.converged()
        [rep] = collect(b.root)["replicas"]
        assert rep["state"] == "streaming" and rep["connected"] and rep["last_error"] is None, rep
        assert rep["lag_seconds"] is not None and "lag_bytes" in rep and "lag_transactions" in rep
        a.kill9()
        logs: list[str] = []
        p = Promote(b.root, {}, log=logs.append)
        p.do_databases()
        entry = read_journal(b.root)["replicas"]["mysql" if engine == "mariadb" else "postgresql"]
        assert entry["status"] == "success", (entry, logs)
        if engine == "mariadb":
            assert entry["position"]["value"] == b.sql("SELECT @@gtid_slave_pos")[0][0]
            assert b.sql("SELECT @@read_only")[0][0] == "0"
        else:
            assert entry["position"]["timeline"] >= 2 and b.sql("SELECT pg_is_in_recovery()") == [["f"]]
        assert not any("restore" in m and "SUCCESS" in m for m in logs)      # no dump restored over it
        assert 1 in ledger(b)
    finally:
        pair.close()


def test_a_lasting_error_of_the_check_is_mailed_once_an_hour_not_every_5_minutes(root, fake, capsys, monkeypatch):
    """cron mails what the check writes on stderr: an error that lasts (an unreadable file, a broken plugin)
    is said once, again after an hour, and at once when it comes back after a check that worked."""
    from hotsync_events.cli import cmd_replicas
    from hotsync_events.cli.cmd_replicas import run
    from hotsync_events.sync import replicas

    _configure(root, "slave", MasterHost="192.0.2.1")
    real = replicas.alert_replicas
    failing = [True]

    def alert(*a, **kw):
        if failing[0]:
            raise OSError("No space left on device")
        return real(*a, **kw)
    monkeypatch.setattr(replicas, "alert_replicas", alert)

    def check() -> str:
        assert run(argparse.Namespace(root=str(root.path), action="check", quiet=True)) in (0, 1)
        return capsys.readouterr().err

    assert "No space left on device" in check()
    assert check() == "" and check() == ""                      # the same error 5 and 10 minutes later
    monkeypatch.setattr(cmd_replicas, "ERROR_AGAIN", 0.0)
    assert "No space left on device" in check()                 # an hour later
    monkeypatch.setattr(cmd_replicas, "ERROR_AGAIN", 3600.0)
    failing[0] = False
    check()                                                     # it works again: the error is over
    failing[0] = True
    assert "No space left on device" in check()


def test_what_the_other_host_named_reaches_the_terminal_as_escapes(root, fake, capsys):
    """A file name the master sent (a peer copy refused for it) holding a terminal's escape sequence is shown,
    not obeyed: `hotsync status` writes control characters as \\xNN."""
    from hotsync_events.sync.status import update_status

    _configure(root, "slave", MasterHost="192.0.2.1")
    update_status(root, lambda d: d.update(peer_refused={"time": 1.0, "problems": [
        "evil\x1b]2;owned\x07\x1b[2J is not a database file"]}))
    update_status(root, lambda d: d["peer_refused"]["problems"].append("del\x7f and c1\x9b too"))
    out = _status(root, capsys)
    assert "\x1b" not in out and "\x07" not in out and "\x9b" not in out
    assert "evil\\x1b]2;owned\\x07\\x1b[2J is not a database file" in out
    # the JSON stays JSON (its own escapes): the Cockpit page reads it
    data = json.loads(_status(root, capsys, as_json=True))
    assert data["peer_refused"]["problems"][1] == "del\x7f and c1\x9b too"
