"""The databases a file copy would tear, dumped with the package's own tool and restored at promote.

Real tools from Debian: slapd's slapcat/slapadd (OpenLDAP, plugin ``directory``), tdb-tools' tdbbackup
and tdbtool (Samba's TDB/LDB files, plugins ``dc`` and ``samba``), acl's getfacl/setfacl (``samba``),
and SQLite's online backup (Asterisk's astdb, ``freepbx``). Each test: master tree, dump, push through
the sync's list builder and rsync, the live files stay home, promote on the slave, data is back.
"""
from __future__ import annotations

import importlib
import os
import re
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from hotsync_events.paths import Root
from hotsync_events.testing import local_push, make_pm, promote, write_tree

SBIN = "/usr/sbin:/sbin:" + os.environ.get("PATH", "")


def have(tool: str) -> bool:
    return shutil.which(tool, path=SBIN) is not None


def plugin(name: str):
    return (name, importlib.import_module("hotsync_plugins." + name.replace("-", "_")))


@pytest.fixture
def roots(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "s").mkdir()
    return Root(tmp_path / "m"), Root(tmp_path / "s")


def users(root: Root, *names: str) -> None:
    uid, gid = os.getuid(), os.getgid()
    write_tree(root, {"/etc/passwd": "".join(f"{u}:x:{uid}:{gid}::/:/bin/false\n" for u in names),
                      "/etc/group": "".join(f"{u}:x:{gid}:\n" for u in names)})


# ------------------------------------------------------------------------------------------- OpenLDAP
LDAP_CONFIG = """\
dn: cn=config
objectClass: olcGlobal
cn: config

dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

include: file:///etc/ldap/schema/core.ldif
include: file:///etc/ldap/schema/cosine.ldif

dn: cn=module{{0}},cn=config
objectClass: olcModuleList
cn: module{{0}}
olcModulePath: /usr/lib/ldap
olcModuleLoad: back_mdb

dn: olcDatabase={{0}}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {{0}}config

dn: olcDatabase={{1}}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {{1}}mdb
olcSuffix: dc=directory,dc=nh
olcDbDirectory: {datadir}
olcDbMaxSize: 10485760
"""

LDAP_DATA = """\
dn: dc=directory,dc=nh
objectClass: dcObject
objectClass: organization
dc: directory
o: NethServer

dn: ou=People,dc=directory,dc=nh
objectClass: organizationalUnit
ou: People

dn: ou=Groups,dc=directory,dc=nh
objectClass: organizationalUnit
ou: Groups
"""


def slapd_host(root: Root) -> Path:
    """A slapd.d configuration under *root* whose database lives in the root's /var/lib/ldap."""
    conf, data = root.join("/etc/openldap/slapd.d"), root.join("/var/lib/ldap")
    conf.mkdir(parents=True)
    data.mkdir(parents=True)
    ldif = root.join("/tmp/config.ldif")
    write_tree(root, {"/tmp/config.ldif": LDAP_CONFIG.format(datadir=data)})
    subprocess.run([shutil.which("slapadd", path=SBIN), "-n0", "-F", str(conf), "-l", str(ldif)], check=True,
                   capture_output=True)
    return conf


def slapcat_dns(root: Root) -> list[str]:
    out = subprocess.run([shutil.which("slapcat", path=SBIN), "-F", str(root.join("/etc/openldap/slapd.d"))],
                         check=True, capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if line.startswith("dn: ")]


@pytest.mark.skipif(not (have("slapcat") and have("slapadd") and Path("/etc/ldap/schema/core.ldif").exists()),
                    reason="slapd (slapcat/slapadd) is not installed")
def test_directory_slapcat_dump_and_slapadd_restore(roots):
    master, slave = roots
    conf = slapd_host(master)
    write_tree(master, {"/tmp/data.ldif": LDAP_DATA})
    subprocess.run([shutil.which("slapadd", path=SBIN), "-q", "-F", str(conf), "-l",
                    str(master.join("/tmp/data.ldif"))], check=True, capture_output=True)
    slapd_host(slave)
    write_tree(slave, {"/var/lib/ldap/stale-file": "the slave's own, moved aside at promote"})
    local_push(master, slave, make_pm([plugin("directory")]))
    # the LDIF travelled, the live MDB files did not
    dump = slave.join("/var/lib/hotsync/dumps/directory-slapd.ldif")
    assert dump.exists() and b"dn: ou=People,dc=directory,dc=nh" in dump.read_bytes()
    assert not slave.join("/var/lib/ldap/data.mdb").exists() or \
        slave.join("/var/lib/ldap/data.mdb").read_bytes() != master.join("/var/lib/ldap/data.mdb").read_bytes()
    users(slave, "root", "ldap")
    outcomes = promote(make_pm([plugin("directory")]), slave)
    assert [(o.name, o.status) for o in outcomes] == [("directory-fix-owners", "success")]
    assert slapcat_dns(slave) == slapcat_dns(master) and len(slapcat_dns(slave)) == 3
    assert list(slave.join("/var/lib").glob("ldap.before-promote-*/stale-file"))


@pytest.mark.skipif(not have("slapcat"), reason="slapd is not installed")
def test_directory_failed_slapcat_keeps_last_good_dump(roots):
    master, _ = roots
    write_tree(master, {"/etc/openldap/slapd.d/": None,
                        "/var/lib/hotsync/dumps/directory-slapd.ldif": "dn: dc=last,dc=good\n"})
    pm = make_pm([plugin("directory")])
    with pytest.raises(AssertionError, match="slapcat"):
        local_push(master, master.join("/tmp"), pm)       # no config: slapcat fails
    assert master.join("/var/lib/hotsync/dumps/directory-slapd.ldif").read_text() == "dn: dc=last,dc=good\n"


# ------------------------------------------------------------------------------------------- Samba TDBs
def tdb_store(path: Path, records: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    script = (f"create {path}\n" if not path.exists() else f"open {path}\n")
    script += "".join(f"store {k} {v}\n" for k, v in records.items()) + "quit\n"
    subprocess.run([shutil.which("tdbtool")], input=script, text=True, check=True, capture_output=True)


def tdb_keys(path: Path) -> list[str]:
    out = subprocess.run([shutil.which("tdbtool"), str(path), "keys"], capture_output=True, text=True).stdout
    return sorted(line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("key "))


@pytest.mark.skipif(not (have("tdbbackup") and have("tdbtool")), reason="tdb-tools is not installed")
def test_dc_samba_databases_ship_as_tdbbackup_copies(roots):
    master, slave = roots
    private = "/var/lib/machines/nsdc/var/lib/samba/private/"
    write_tree(master, {"/var/lib/machines/nsdc/etc/samba/smb.conf": "[global]\n"})
    tdb_store(master.join(private + "secrets.tdb"), {"SECRETS/MACHINE_PASSWORD/NH": "s3cret"})
    tdb_store(master.join(private + "sam.ldb"), {"DN=DC=NH": "domain", "DN=CN=ADMINISTRATOR": "user"})
    tdb_store(master.join(private + "sam.ldb.d/DC=NH.ldb"), {"DN=CN=USERS": "container"})
    local_push(master, slave, make_pm([plugin("dc")]))
    assert slave.join("/var/lib/machines/nsdc/etc/samba/smb.conf").exists()
    assert not slave.join(private + "sam.ldb").exists(), "the live LDB file must not be copied"
    assert slave.join("/var/lib/hotsync/dumps/dc-samba-tdb.tar").exists()
    assert not list(master.join(private).rglob("*.hotsync-tdbbackup")), "temp copies left behind"
    outcomes = promote(make_pm([plugin("dc")]), slave)
    assert [(o.name, o.status) for o in outcomes] == [("dc-enable-at-boot", "success")]
    for f in ("secrets.tdb", "sam.ldb", "sam.ldb.d/DC=NH.ldb"):
        assert tdb_keys(slave.join(private + f)) == tdb_keys(master.join(private + f)) != []


@pytest.mark.skipif(not (have("tdbbackup") and have("tdbtool")), reason="tdb-tools is not installed")
def test_samba_tdb_dump_refuses_a_corrupt_database(roots):
    master, _ = roots
    write_tree(master, {"/etc/samba/smb.conf": "[global]\n", "/var/lib/samba/private/secrets.tdb": "not a tdb",
                        "/var/lib/hotsync/dumps/samba-tdb.tar": "last good"})
    with pytest.raises(AssertionError, match="tdbbackup"):
        local_push(master, master.join("/tmp"), make_pm([plugin("samba")]))
    assert master.join("/var/lib/hotsync/dumps/samba-tdb.tar").read_text() == "last good"


# ------------------------------------------------------------------------------------------- ACLs
def acl_supported(path: Path) -> bool:
    return have("setfacl") and subprocess.run(["setfacl", "-m", f"u:{os.getuid()}:rwx", str(path)],
                                               capture_output=True).returncode == 0


def test_samba_acl_dump_and_post_restore_action(roots):
    master, slave = roots
    write_tree(master, {"/etc/samba/smb.conf": "x", "/var/lib/nethserver/ibay/docs/a.txt": "a"})
    if not (have("getfacl") and acl_supported(master.join("/var/lib/nethserver/ibay/docs"))):
        pytest.skip("getfacl/setfacl or ACL support missing")
    if have("tdbbackup"):
        tdb_store(master.join("/var/lib/samba/private/secrets.tdb"), {"k": "v"})
    local_push(master, slave, make_pm([plugin("samba")]))
    dump = slave.join("/var/lib/hotsync/dumps/samba-acls.dump").read_text()
    assert "# file: docs" in dump and re.search(r"^user:[^:]+:rwx", dump, re.M), dump
    subprocess.run(["setfacl", "-b", str(slave.join("/var/lib/nethserver/ibay/docs"))], check=True)
    pm = make_pm([plugin("samba")])
    from hotsync_events.configdb import open_db
    from hotsync_events.types import ActionContext

    [(p, action)] = [(p, a) for p, a in pm.collect("hotsync_actions", db=open_db("configuration", slave), root=slave)]
    assert (p, action.event, action.name, action.priority) == ("samba", "post-restore-data", "ibays-restore-acls", 60)
    action.run(ActionContext("post-restore-data", (), slave, None, pm, log=lambda m: None))
    got = subprocess.run(["getfacl", "-p", str(slave.join("/var/lib/nethserver/ibay/docs"))],
                         capture_output=True, text=True).stdout
    assert re.search(r"^user:[^:]+:rwx", got, re.M), got       # the named entry setfacl -b removed is back


# ------------------------------------------------------------------------------------------- astdb
def test_freepbx_astdb_online_backup_and_restore(roots):
    master, slave = roots
    write_tree(master, {"/etc/freepbx.conf": "<?php", "/etc/asterisk/sip.conf": "s"})
    astdb = master.join("/var/lib/asterisk/astdb.sqlite3")
    astdb.parent.mkdir(parents=True, exist_ok=True)
    live = sqlite3.connect(astdb)
    live.execute("CREATE TABLE astdb (key VARCHAR(256) PRIMARY KEY, value VARCHAR(256))")
    live.executemany("INSERT INTO astdb VALUES (?, ?)", [(f"/CF/{n}", f"{n + 100}") for n in range(200)])
    live.commit()
    live.execute("BEGIN")
    live.execute("INSERT INTO astdb VALUES ('/DND/200', 'YES')")     # uncommitted while the dump runs
    local_push(master, slave, make_pm([plugin("freepbx")]))
    live.rollback()
    live.close()
    assert not slave.join("/var/lib/asterisk/astdb.sqlite3").exists()
    users(slave, "root", "asterisk")
    outcomes = promote(make_pm([plugin("freepbx")]), slave)
    assert [(o.name, o.status) for o in outcomes] == [("freepbx-fix-owners", "success"), ("freepbx-fwconsole", "success")]
    with sqlite3.connect(slave.join("/var/lib/asterisk/astdb.sqlite3")) as copy:
        assert copy.execute("SELECT count(*) FROM astdb").fetchone()[0] == 200
        assert copy.execute("SELECT value FROM astdb WHERE key='/CF/7'").fetchone()[0] == "107"
