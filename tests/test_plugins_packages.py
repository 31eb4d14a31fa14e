"""Every built-in package plugin on a fake package tree: detection, paths really synced by rsync,
excludes really kept out, promote steps in order (and run), services declared.

The sync is the sync's own list builder and rsync options, pushed with a local rsync
(:func:`hotsync_events.testing.local_push`); dumps that need a database server are tested by the
database issue's tests, the tool-based ones (slapcat, tdbbackup, sqlite, getfacl) in test_plugins_dumps.py.
"""
from __future__ import annotations

import importlib
import os
import shutil

import pytest

from hotsync_events.paths import Root
from hotsync_events.promote.steps import collect_promote_steps
from hotsync_events.testing import local_push, make_pm, promote, write_tree

pytestmark = pytest.mark.skipif(shutil.which("rsync") is None, reason="rsync is not installed")

NC = "/var/lib/nethserver/nextcloud/"
VMAIL = "/var/lib/nethserver/vmail/"
NSDC = "/var/lib/machines/nsdc/"
USERS = ("root", "apache", "squid", "ufdb", "asterisk", "ldap", "vmail", "redis", "_rspamd", "suricata")

#: plugin -> what makes it active, a tree, what must reach the slave, what must not, steps, services
PACKAGES: dict[str, dict] = {
    "nextcloud": dict(
        activate={"/usr/share/nextcloud/": None},
        tree={NC + "admin/files/a.txt": "a", NC + "admin/cache/c": "c", NC + "appdata_oc1/preview/p.png": "p",
              NC + "admin/uploads/chunk": "u", NC + "big.part": "x", NC + "nextcloud.log": "l",
              "/usr/share/nextcloud/config/config.php": "<?php $CONFIG = array('maintenance' => true);",
              "/usr/share/nextcloud/apps/calendar/appinfo/info.xml": "i"},
        synced=[NC + "admin/files/a.txt", "/usr/share/nextcloud/config/config.php",
                "/usr/share/nextcloud/apps/calendar/appinfo/info.xml"],
        excluded=[NC + "admin/cache/c", NC + "appdata_oc1/preview/p.png", NC + "admin/uploads/chunk",
                  NC + "big.part", NC + "nextcloud.log"],
        steps=["nextcloud-fix-owners", "nextcloud-maintenance-off"], services={}),
    "dnsmasq": dict(
        activate={"/etc/dnsmasq.conf": "x"},
        tree={"/var/lib/dnsmasq/dnsmasq.leases": "1700000000 aa:bb 192.168.1.5 pc *\n",
              "/var/lib/dnsmasq/other": "o"},
        synced=["/var/lib/dnsmasq/dnsmasq.leases"], excluded=["/var/lib/dnsmasq/other"],
        steps=[], services={"dnsmasq": True}),
    "squidguard": dict(
        activate={"/var/squidGuard/": None},
        tree={"/var/squidGuard/blacklists/ads/domains": "ads.example\n", "/var/squidGuard/blacklists/bl.tar.gz": "z",
              "/var/squidGuard/blacklists.old/ads/domains": "x"},
        synced=["/var/squidGuard/blacklists/ads/domains", "/var/squidGuard/blacklists.old/ads/domains"],
        excluded=["/var/squidGuard/blacklists/bl.tar.gz"],
        steps=["squidguard-fix-owners"], services={"squid": False, "ufdb": False}),
    "pulledpork": dict(
        activate={"/etc/pulledpork/pulledpork.conf": "x"},
        tree={"/etc/suricata/rules/emerging.rules": "alert ...", "/etc/suricata/rules/x.tmp": "t",
              "/etc/suricata/suricata.yaml": "y"},
        synced=["/etc/suricata/rules/emerging.rules"], excluded=["/etc/suricata/rules/x.tmp", "/etc/suricata/suricata.yaml"],
        steps=["pulledpork-fix-owners"], services={"suricata": False}),
    "antivirus": dict(
        activate={"/etc/freshclam.conf": "x"},
        tree={"/var/lib/clamav/main.cvd": "m", "/var/lib/clamav/daily.cld": "d", "/var/lib/clamav/bytecode.cvd": "b",
              "/var/lib/clamav/tmp.1234": "t", "/var/lib/clamav/clamav-abc/x": "x", "/var/lib/clamav/freshclam.dat": "f"},
        synced=["/var/lib/clamav/main.cvd", "/var/lib/clamav/daily.cld", "/var/lib/clamav/bytecode.cvd"],
        excluded=["/var/lib/clamav/tmp.1234", "/var/lib/clamav/clamav-abc/x", "/var/lib/clamav/freshclam.dat"],
        steps=["antivirus-init-avdb"], services={"clamd": False, "freshclam": True}),
    "samba-audit": dict(
        activate={"/etc/rsyslog.d/smbaudit.conf": "x"},
        tree={"/var/log/smbaudit.log": "share|user|open\n", "/var/log/messages": "m"},
        synced=["/var/log/smbaudit.log"], excluded=["/var/log/messages"], steps=[], services={}),
    "freepbx": dict(
        activate={"/etc/freepbx.conf": "<?php"},
        tree={"/etc/asterisk/sip.conf": "s", "/var/lib/asterisk/sounds/en/hello.wav": "w",
              "/var/lib/asterisk/astdb.sqlite3-journal": "j", "/var/www/html/freepbx/index.php": "i",
              "/etc/amportal.conf": "a", "/etc/freepbx_db.conf": "d", "/var/lib/asterisk/bin/fwconsole": "#!/bin/sh\n",
              "/usr/sbin/fwconsole": "#!/bin/sh\n",
              "/var/spool/asterisk/voicemail/default/200/INBOX/msg0000.wav": "v",
              "/var/spool/asterisk/tmp/x": "t"},
        synced=["/etc/asterisk/sip.conf", "/var/lib/asterisk/sounds/en/hello.wav", "/var/www/html/freepbx/index.php",
                "/etc/amportal.conf", "/etc/freepbx.conf", "/etc/freepbx_db.conf", "/var/lib/asterisk/bin/fwconsole",
                "/var/spool/asterisk/voicemail/default/200/INBOX/msg0000.wav"],
        excluded=["/var/lib/asterisk/astdb.sqlite3-journal", "/var/spool/asterisk/tmp/x", "/usr/sbin/fwconsole"],
        steps=["freepbx-fix-owners", "freepbx-fwconsole"], services={"asterisk": True}),
    "webtop5": dict(
        activate={"/var/lib/nethserver/webtop/": None},
        tree={"/var/lib/nethserver/webtop/domains/nh/images/logo.png": "l", "/var/lib/z-push/state/dev1": "z"},
        synced=["/var/lib/nethserver/webtop/domains/nh/images/logo.png"], excluded=["/var/lib/z-push/state/dev1"],
        steps=[], services={"tomcat8@webtop": True}),
    "mattermost": dict(
        activate={"/opt/mattermost/bin/mattermost": "x"},
        tree={"/var/lib/nethserver/mattermost/data/users/f": "f", "/opt/mattermost/config/config.json": "{}",
              "/opt/mattermost/logs/mattermost.log": "l"},
        synced=["/var/lib/nethserver/mattermost/data/users/f", "/opt/mattermost/config/config.json"],
        excluded=["/opt/mattermost/logs/mattermost.log", "/opt/mattermost/bin/mattermost"],
        steps=[], services={"mattermost": True}),
    "collectd": dict(
        activate={"/etc/collectd.conf": "x"},
        tree={"/var/lib/collectd/rrd/host/load/load.rrd": "r", "/var/lib/collectd/rrd/host/load/load.rrd.tmp": "t"},
        synced=["/var/lib/collectd/rrd/host/load/load.rrd"], excluded=["/var/lib/collectd/rrd/host/load/load.rrd.tmp"],
        steps=[], services={"collectd": True}),
    "cups": dict(
        activate={"/etc/cups/cupsd.conf": "x"},
        tree={"/etc/cups/printers.conf": "p", "/etc/cups/ppd/hp.ppd": "h", "/etc/cups/ppd/hp.ppd.O": "o",
              "/etc/cups/classes.conf": "c"},
        synced=["/etc/cups/printers.conf", "/etc/cups/ppd/hp.ppd", "/etc/cups/classes.conf"],
        excluded=["/etc/cups/ppd/hp.ppd.O", "/etc/cups/cupsd.conf"], steps=[], services={"cups": True}),
    "dc": dict(
        activate={NSDC + "etc/os-release": "CentOS"},
        tree={NSDC + "etc/samba/smb.conf": "s", NSDC + "var/lib/samba/private/krb5.conf": "k",
              NSDC + "var/log/samba/log.samba": "l", NSDC + "run/samba.pid": "1",
              "/etc/systemd/system/machines.target.wants/nsdc.service": "u",
              "/etc/systemd/system/multi-user.target.wants/machines.target": "t",
              NSDC + "var/lib/samba/private/secrets.tdb": "live", NSDC + "var/lib/samba/private/sam.ldb": "live"},
        synced=[NSDC + "etc/samba/smb.conf", NSDC + "var/lib/samba/private/krb5.conf"],
        excluded=[NSDC + "var/log/samba/log.samba", NSDC + "run/samba.pid",
                  NSDC + "var/lib/samba/private/secrets.tdb", NSDC + "var/lib/samba/private/sam.ldb",
                  "/etc/systemd/system/machines.target.wants/nsdc.service",     # root code: never pushed,
                  "/etc/systemd/system/multi-user.target.wants/machines.target"],  # made at promote
        steps=["dc-enable-at-boot"], services={"nsdc": True}),
    "letsencrypt": dict(
        activate={"/etc/letsencrypt/": None},
        tree={"/etc/letsencrypt/live/h/cert.pem": "c", "/etc/letsencrypt/.certbot.lock": "l"},
        synced=["/etc/letsencrypt/live/h/cert.pem"], excluded=["/etc/letsencrypt/.certbot.lock"],
        steps=[], services={"certbot-renew": True}),
    "sssd": dict(
        activate={"/etc/sssd/sssd.conf": "x"},
        tree={"/etc/krb5.keytab": "k", "/var/lib/sss/db/cache_ad.ldb": "c"},
        synced=["/etc/krb5.keytab"], excluded=["/var/lib/sss/db/cache_ad.ldb", "/etc/sssd/sssd.conf"],
        steps=[], services={"sssd": False}),
    "directory": dict(
        activate={"/etc/openldap/slapd.d/": None},
        tree={"/var/lib/ldap/data.mdb": "live"},
        synced=[], excluded=["/var/lib/ldap/data.mdb"],
        steps=["directory-fix-owners"], services={"slapd": True}),
    "samba": dict(
        activate={"/etc/samba/smb.conf": "x"},
        tree={"/var/lib/nethserver/ibay/docs/report.odt": "r", "/var/lib/samba/private/secrets.tdb": "live"},
        synced=["/var/lib/nethserver/ibay/docs/report.odt"], excluded=["/var/lib/samba/private/secrets.tdb"],
        steps=[], services={"nmb": False, "smb": True}),
    "mail-server": dict(
        activate={"/etc/dovecot/dovecot.conf": "x"},
        tree={VMAIL + "alice/Maildir/cur/1.eml": "m", VMAIL + "alice/Maildir/dovecot-uidlist": "u",
              VMAIL + "alice/Maildir/dovecot.index.cache": "c", VMAIL + "alice/Maildir/tmp/2.eml": "t",
              VMAIL + "alice/Maildir/.Sent/tmp/3.eml": "t", VMAIL + "alice/Maildir/.Sent/cur/4.eml": "s",
              "/var/lib/nethserver/sieve-scripts/alice/x.sieve": "s", "/var/lib/getmail/alice.cfg": "g",
              "/var/lib/rspamd/stats.ucl": "r", "/var/lib/redis/rspamd/dump.rdb": "d"},
        synced=[VMAIL + "alice/Maildir/cur/1.eml", VMAIL + "alice/Maildir/dovecot-uidlist",
                VMAIL + "alice/Maildir/.Sent/cur/4.eml", "/var/lib/nethserver/sieve-scripts/alice/x.sieve",
                "/var/lib/getmail/alice.cfg", "/var/lib/rspamd/stats.ucl", "/var/lib/redis/rspamd/dump.rdb"],
        excluded=[VMAIL + "alice/Maildir/dovecot.index.cache", VMAIL + "alice/Maildir/tmp/2.eml",
                  VMAIL + "alice/Maildir/.Sent/tmp/3.eml"],
        steps=["mail-server-fix-owners"],
        services={"dovecot": True, "getmail": True, "postfix": True, "redis@rspamd": True, "rspamd": True}),
}


def plugin_module(name: str):
    return importlib.import_module("hotsync_plugins." + name.replace("-", "_"))


def users_file(root: Root) -> None:
    """passwd/group under the root naming every user the plugins chown to, all as the test's own ids."""
    uid, gid = os.getuid(), os.getgid()
    write_tree(root, {"/etc/passwd": "".join(f"{u}:x:{uid}:{gid}::/:/bin/false\n" for u in USERS),
                      "/etc/group": "".join(f"{u}:x:{gid}:\n" for u in USERS)})


@pytest.fixture
def roots(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "s").mkdir()
    return Root(tmp_path / "m"), Root(tmp_path / "s")


def test_every_supported_package_has_a_builtin_plugin():
    from hotsync_events.manager import get_plugin_manager

    names = {i.name for i in get_plugin_manager(entrypoints=False).plugin_infos() if i.error is None}
    assert set(PACKAGES) | {"mysql", "postgresql"} <= names


@pytest.mark.parametrize("name", sorted(PACKAGES))
def test_inactive_without_its_package(name, roots):
    master, _ = roots
    pm = make_pm([(name, plugin_module(name))])
    write_tree(master, {"/etc/hostname": "bare\n"})      # a host without the package
    for hook in ("hotsync_sync_paths", "hotsync_services", "hotsync_promote_steps", "hotsync_dumps"):
        assert pm.collect(hook, db=None, root=master) == [], hook
    assert pm.detect(master) == {name: False}


@pytest.mark.parametrize("name", sorted(PACKAGES))
def test_package_paths_synced_excludes_kept_out(name, roots):
    spec = PACKAGES[name]
    master, slave = roots
    write_tree(master, {**spec["activate"], **spec["tree"]})
    pm = make_pm([(name, plugin_module(name))])
    assert pm.detect(master) == {name: True}
    local_push(master, slave, pm, dumps=False)
    for p in spec["synced"]:
        assert slave.join(p).exists(), f"{name}: {p} did not reach the slave"
        assert slave.join(p).read_bytes() == master.join(p).read_bytes()
    for p in spec["excluded"]:
        assert master.join(p).exists() and not slave.join(p).exists(), f"{name}: {p} was shipped"


@pytest.mark.parametrize("name", sorted(PACKAGES))
def test_package_promote_steps_in_order_and_services(name, roots):
    spec = PACKAGES[name]
    master, slave = roots
    write_tree(master, {**spec["activate"], **spec["tree"]})
    pm = make_pm([(name, plugin_module(name))])
    from hotsync_events.configdb import open_db
    from hotsync_events.events.services import collect_services

    db = open_db("configuration", master)
    assert [s.name for _, s in collect_promote_steps(pm, db, master)] == spec["steps"]
    services = {s.name: s.writer for _, s in collect_services(pm, db)}
    assert services == spec["services"]
    # the steps run on a slave that received the tree, each SUCCESS, in the declared order
    local_push(master, slave, pm, dumps=False)
    write_tree(slave, spec["activate"])
    users_file(slave)
    outcomes = promote(make_pm([(name, plugin_module(name))]), slave, restore_dumps=False)
    assert [(o.name, o.status, o.error) for o in outcomes] == [(s, "success", "") for s in spec["steps"]]


def test_nextcloud_promote_turns_maintenance_off(roots):
    master, slave = roots
    spec = PACKAGES["nextcloud"]
    write_tree(master, {**spec["activate"], **spec["tree"]})
    local_push(master, slave, make_pm([("nextcloud", plugin_module("nextcloud"))]), dumps=False)
    write_tree(slave, spec["activate"])
    users_file(slave)
    promote(make_pm([("nextcloud", plugin_module("nextcloud"))]), slave)
    assert b"'maintenance' => false" in slave.join("/usr/share/nextcloud/config/config.php").read_bytes()


def test_antivirus_promote_fails_clearly_without_signatures(roots):
    _, slave = roots
    write_tree(slave, {"/etc/freshclam.conf": "x", "/var/lib/clamav/main.cvd": "m"})
    [outcome] = promote(make_pm([("antivirus", plugin_module("antivirus"))]), slave)
    assert outcome.status == "failed" and "daily, bytecode" in outcome.error and "freshclam" in outcome.error
    write_tree(slave, {"/usr/share/clamav/daily.cvd": "d", "/usr/share/clamav/bytecode.cvd": "b"})
    [outcome] = promote(make_pm([("antivirus", plugin_module("antivirus"))]), slave)
    assert outcome.status == "success" and slave.join("/var/lib/clamav/daily.cvd").read_text() == "d"


def test_databases_disabled_copies_ldap_files_instead(roots):
    master, slave = roots
    write_tree(master, {"/etc/openldap/slapd.d/": None, "/var/lib/ldap/data.mdb": "files"})
    pm = make_pm([("directory", plugin_module("directory"))])
    from hotsync_events.configdb import open_db

    open_db("configuration", master).setprop("hotsync", {"databases": "disabled"})
    local_push(master, slave, pm)
    assert slave.join("/var/lib/ldap/data.mdb").read_text() == "files"
