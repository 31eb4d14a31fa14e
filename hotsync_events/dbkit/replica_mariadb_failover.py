"""MariaDB replication: promote, re-pair (saving what the old master committed after the takeover) and
semi-sync, for :class:`hotsync_events.dbkit.replica_mariadb.MariaDBReplication` (its methods call these)."""
from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from hotsync_events.dbkit.kit import DatabaseError, find_program
from hotsync_events.dbkit.replica import (Link, Position, Promoted, Repaired, ReplicationError, find_saved, owner_of,
                                          publish, run, saved_folder, sha256_file, write_private)
from hotsync_events.dbkit.replica_mariadb_tools import format_gtids, parse_gtids, quote

if TYPE_CHECKING:
    from hotsync_events.dbkit.replica_mariadb import MariaDBReplication


def promote(repl: MariaDBReplication, *, timeout: float = 60.0, dry_run: bool = False, force: bool = False,
            log=print) -> Promoted:
    t0 = time.monotonic()
    st = repl.status()
    if st.role != "replica":
        said = ["not a replica: nothing to promote (already a master)"]
        finished = not dry_run and repl._read_state().get("role") == "replica"
        if finished:
            # a promote begun by an earlier run that stopped after RESET SLAVE ALL: finish it
            with repl._cli() as cli:
                repl._sql(cli, "SET GLOBAL read_only = OFF, rpl_semi_sync_slave_enabled = OFF, "
                               "rpl_semi_sync_master_enabled = OFF", what="open the server for writes")
            repl._rewrite_role("master", synchronous=False, log=log)
            said.append("finished a promote begun earlier: opened for writes, its role written as master")
        return Promoted(server=repl.label, dry_run=dry_run, position=Position(repl.engine, st.applied or ""),
                        notes=said, already_master=True, finished_earlier=finished)
    heard = _heard(repl) if st.connected and not dry_run and not force else None
    for _ in range(15 if heard is not None else 0):
        time.sleep(0.2)             # a master killed a moment ago: its replica sees the connection end at once
        st = repl.status()
        if not st.connected:
            break
    if st.connected and heard is not None and _heard(repl) == heard:
        # connected, but 3 s without an event or a heartbeat (the master sends one every second): a master
        # whose host lost power leaves the connection up until slave_net_timeout; it is gone
        st = replace(st, connected=False)
    if st.connected and not dry_run and not force:
        raise ReplicationError(f"{repl.label}: the master is still connected to this replica and still sends "
                               "(events or heartbeats): it is alive, and a promote now would make two masters; "
                               "stop the master's database server (or the master) first, or run "
                               "hotsync-promote --force")
    would_lose = ("the master is still connected: promoting now splits the pair (stop the master first)"
                  if st.connected else
                  "whatever the master committed after its last event reached this replica"
                  + (" (none that it acknowledged to a client: the replica was semi-synchronous, unless the "
                     "master had fallen back to asynchronous)" if st.synchronous else ""))
    if dry_run:
        return Promoted(server=repl.label, dry_run=True,
                        position=Position(repl.engine, st.received or st.applied or ""),
                        caught_up=not st.lag_transactions and not st.lag_bytes, lag_seconds=st.lag_seconds,
                        not_applied=f"{st.lag_transactions or 0} transaction(s), {st.lag_bytes or 0} bytes of "
                                    "relay log received but not applied yet (a promote applies them first)",
                        would_lose=would_lose, notes=[f"replica state: {st.state}"]
                        + ([f"last error: {st.last_error}"] if st.last_error else []))
    notes: list[str] = []
    with repl._cli() as cli:
        repl._sql(cli, "STOP SLAVE IO_THREAD", what="stop receiving from the master")
        idle = 0
        caught_up = False
        partial = False
        deadline = time.monotonic() + timeout
        for _ in range(int(timeout / 0.1) + 2):
            ss = repl._slave_status(cli) or {}
            if ss.get("Slave_SQL_Running") != "Yes":
                err = ss.get("Last_SQL_Error")
                if err and not force:
                    raise ReplicationError(f"{repl.label}: the replica's SQL thread stopped with an error, "
                                           f"it cannot apply what it received: {err}")
                break
            if (ss.get("Master_Log_File"), ss.get("Read_Master_Log_Pos")) == \
                    (ss.get("Relay_Master_Log_File"), ss.get("Exec_Master_Log_Pos")):
                caught_up = True
                break
            if "read all relay log" in (ss.get("Slave_SQL_Running_State") or ""):
                idle += 1
                if idle >= 5:       # applied all complete transactions; the tail is an incomplete one
                    partial = caught_up = True
                    break
            else:
                idle = 0
            if time.monotonic() >= deadline:
                break
            time.sleep(0.1)
        if not caught_up and not force:
            st = repl.status()
            raise ReplicationError(f"{repl.label}: not caught up after {timeout:.0f} s: "
                                   f"{st.lag_transactions} transaction(s) received but not applied; "
                                   "run again with a longer timeout (or force)")
        repl._sql(cli, "STOP SLAVE", what="stop replication")
        gtid = repl._vars(cli, "gtid_slave_pos")["gtid_slave_pos"] or ""
        repl._sql(cli, "RESET SLAVE ALL", what="forget the master")
        repl._sql(cli, "SET GLOBAL read_only = OFF, rpl_semi_sync_slave_enabled = OFF, "
                       "rpl_semi_sync_master_enabled = OFF", what="open the server for writes")
    if partial:
        notes.append("the last transaction being received was incomplete when the master stopped: dropped")
    repl._rewrite_role("master", synchronous=False, log=log)
    waited = time.monotonic() - t0
    log(f"{repl.label}: promoted at GTID {gtid} after {waited:.2f} s")
    return Promoted(server=repl.label, dry_run=False, position=Position(repl.engine, gtid), waited=waited,
                    caught_up=caught_up, lag_seconds=st.lag_seconds, would_lose=would_lose, notes=notes)


def _heard(repl: MariaDBReplication) -> tuple:
    """What the replica has heard from its master so far: its heartbeats and the position it received."""
    with repl._cli() as cli:
        rows = repl._dicts(cli, "SHOW ALL SLAVES STATUS", what="read the replica status")
    r = rows[0] if rows else {}
    return (r.get("Slave_received_heartbeats"), r.get("Gtid_IO_Pos"), r.get("Master_Log_File"),
            r.get("Read_Master_Log_Pos"))


def repair(repl: MariaDBReplication, link: Link, save_dir: Path, takeover: Position, *, seed: Path | None = None,
           log=print) -> Repaired:
    """On the old master: save what it committed after *takeover* (the new master's promote position)
    into *save_dir* (a dated folder; ``-N`` appended if it exists), then follow the new master: at once
    when nothing diverged, else from the *seed* (a :meth:`take_seed` of the new master) if given;
    without a seed the result says ``needs-seed`` and the server stays read-only, unreplicated."""
    owner = owner_of(repl.root.join(repl.server.datadir))
    with repl._maybe_cli() as cli:
        if cli is not None:
            repl._configure(cli, link, role="replica", log=log)
            repl._sql(cli, "SET GLOBAL read_only = ON", what="make the old master read-only")
        else:
            repl._configure_offline(link, role="replica", owner=owner, log=log)
    try:
        repl.server.ping()
    except DatabaseError:
        repl._control().start(log=log)          # starts read-only (the drop-in says so)
    with repl._cli() as cli:
        ss = repl._slave_status(cli)
        if ss is not None and ss.get("Master_Host") == link.master_host:
            st = repl.status(link)
            return Repaired(server=repl.label, diverged=False, transactions=0, saved_to=None, method="follow",
                            state="replica", report={"note": "already a replica of the new master",
                                                     "status": st.state})
        v = repl._vars(cli, "gtid_binlog_pos", "log_bin_basename", "log_bin")
        mine = parse_gtids(v["gtid_binlog_pos"])
        theirs = parse_gtids(takeover.value)
        ahead = [d for d, g in theirs.items() if d in mine and g[1] > mine[d][1]]
        if ahead:     # the new master took over at a point this server never reached: not its history
            raise ReplicationError(
                f"{repl.label}: the takeover position {takeover.value} is not in this server's history (its own "
                f"is {v['gtid_binlog_pos'] or 'empty'}, domain(s) {', '.join(map(str, ahead))} behind it): nothing "
                "decides what it wrote after the promote; save it by hand (mariadb-dump --all-databases), then "
                "hotsync replicas setup --seed")
        diverged = {d: g for d, g in mine.items() if d not in theirs or g[1] > theirs[d][1]}
        report: dict = {"engine": repl.engine, "server": repl.label, "takeover": takeover.value,
                        "old_master_position": v["gtid_binlog_pos"]}
        saved = None
        count = 0
        if diverged:
            count, saved, report = _save_divergence(repl, cli, save_dir, theirs, mine, v, report, log=log)
        else:
            repl._sql(cli, "STOP SLAVE", what="stop replication")
            repl._sql(cli, "RESET SLAVE ALL", what="forget old replication settings")
            repl._sql(cli, f"SET GLOBAL gtid_slave_pos = {quote(v['gtid_binlog_pos'] or '')}",
                      what="start from this server's own position")
    if not diverged:
        st = repl.configure_replica(link, log=log)
        log(f"{repl.label}: nothing committed after the takeover at {takeover.value}: following the new master")
        return Repaired(server=repl.label, diverged=False, transactions=0, saved_to=None, method="follow",
                        state="replica", report={**report, "status": st.state})
    if seed is None:
        log(f"{repl.label}: {count} transaction(s) after the takeover saved in {saved}; needs a seed from "
            "the new master (take_seed there, ship it, seed here)")
        return Repaired(server=repl.label, diverged=True, transactions=count, saved_to=str(saved),
                        method="needs-seed", state="needs-seed", report=report)
    repl.seed(link, seed, log=log)
    return Repaired(server=repl.label, diverged=True, transactions=count, saved_to=str(saved), method="seed",
                    state="replica", report=report)


def _save_divergence(repl: MariaDBReplication, cli, save_dir: Path, theirs, mine, v, report: dict, *, log=print):
    earlier = find_saved(Path(save_dir), takeover=report["takeover"],
                         old_master_position=report["old_master_position"])
    if earlier is not None:
        log(f"{repl.label}: what diverged was already saved in {earlier[0]}")
        return earlier[1].get("transactions", 0), earlier[0], earlier[1]
    binlog = find_program("mariadb-binlog", "mysqlbinlog")
    logs = [r[0] for r in repl._sql(cli, "SHOW BINARY LOGS", what="list binary logs")]
    if not logs:
        raise ReplicationError(f"{repl.label}: the binary log is off or empty: cannot tell what diverged")
    start = format_gtids({d: g for d, g in theirs.items() if d in mine})
    base = [binlog, *cli, "--read-from-remote-server", "--to-last-log"]
    if start:
        base.append(f"--start-position={start}")
    with saved_folder(Path(save_dir)) as tmp:
        with open(tmp / "diverged.sql", "wb") as out:
            run([*base, logs[0]], server=repl.label, what="read the diverged binlog events", stdout=out)
        with open(tmp / "diverged-rows.txt", "wb") as out:
            run([*base, "--base64-output=DECODE-ROWS", "--verbose", logs[0]], server=repl.label,
                what="decode the diverged binlog events", stdout=out)
        txns = parse_listing(tmp / "diverged-rows.txt")
        # the raw binlog files that hold them: newest back to the first one that starts at or before the takeover
        bindir = Path(v["log_bin_basename"]).parent
        (tmp / "binlog").mkdir()
        copied = []
        for name in reversed(logs):
            src = bindir / name
            shutil.copy2(src, tmp / "binlog" / name)
            copied.append(name)
            rows = repl._sql(cli, f"SELECT BINLOG_GTID_POS({quote(name)}, 4)",
                             what="read a binlog's start position")
            at_start = parse_gtids(rows[0][0] if rows and rows[0] else "")
            if all(at_start.get(d, (0, 0))[1] <= theirs.get(d, (0, 0))[1] for d in mine):
                break
        files = {f"binlog/{n}": sha256_file(tmp / "binlog" / n) for n in copied}
        files.update({n: sha256_file(tmp / n) for n in ("diverged.sql", "diverged-rows.txt")})
        tables: dict[str, int] = {}
        for t in txns:
            for name in t["tables"]:
                tables[name] = tables.get(name, 0) + 1
        report.update({
            "saved": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "transactions": len(txns),
            "first": txns[0]["time"] if txns else None, "last": txns[-1]["time"] if txns else None,
            "gtids": [t["gtid"] for t in txns[:1000]], "tables": tables, "files": files,
            "how_to_reapply": "review diverged-rows.txt; to replay on the new master: "
                              "mariadb-binlog --skip-gtid-strict-mode binlog/<files> --start-position="
                              f"{start or '<takeover>'} | mariadb (GTIDs of the old master: check for conflicts)"})
        write_private(tmp / "report.json", json.dumps(report, indent=1, sort_keys=True), mode=0o600)
        final = publish(tmp, Path(save_dir))
    log(f"{repl.label}: saved {len(txns)} transaction(s) committed after the takeover at {format_gtids(theirs)} "
        f"into {final}")
    return len(txns), final, report


def set_synchronous(repl: MariaDBReplication, link: Link, on: bool, *, log=print) -> None:
    """Semi-synchronous replication (``AFTER_SYNC``: a commit returns once the replica has the event)
    on this host's side: the master's switch, or the replica's (its I/O thread reconnects)."""
    with repl._cli() as cli:
        ss = repl._slave_status(cli)
        flag = "ON" if on else "OFF"
        if ss is not None:
            repl._sql(cli, f"SET GLOBAL rpl_semi_sync_slave_enabled = {flag}", what="set semi-sync (replica)")
            if ss.get("Slave_IO_Running") in ("Yes", "Connecting"):
                repl._sql(cli, "STOP SLAVE IO_THREAD", what="reconnect the replica")
                repl._sql(cli, "START SLAVE IO_THREAD", what="reconnect the replica")
            role = "replica"
        else:
            repl._sql(cli, "SET GLOBAL rpl_semi_sync_master_wait_point = 'AFTER_SYNC', "
                           f"rpl_semi_sync_master_timeout = {repl.semi_sync_timeout_ms}, "
                           "rpl_semi_sync_master_wait_no_slave = OFF, "
                           f"rpl_semi_sync_master_enabled = {flag}", what="set semi-sync (master)")
            role = "master"
    repl._rewrite_role(role, synchronous=on, log=log)
    log(f"{repl.label}: semi-synchronous replication {flag.lower()} ({role} side)")


_GTID_LINE = re.compile(r"^#(\d{6}\s+\d{1,2}:\d{2}:\d{2}) server id (\d+) .*\tGTID (\d+-\d+-\d+)")
_ROW_LINE = re.compile(r"^### (?:INSERT INTO|UPDATE|DELETE FROM) (`(?:[^`]|``)*`\.`(?:[^`]|``)*`)")


def parse_listing(path: Path) -> list[dict]:
    """Transactions in a decoded ``mariadb-binlog --verbose`` listing: GTID, time, tables touched (rows or DDL)."""
    txns: list[dict] = []
    cur: dict | None = None
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            m = _GTID_LINE.match(line)
            if m:
                raw = m.group(1).split()
                stamp = f"20{raw[0][:2]}-{raw[0][2:4]}-{raw[0][4:6]} {raw[1]}"
                cur = {"gtid": m.group(3), "time": stamp, "server_id": int(m.group(2)), "tables": []}
                kind = line.rstrip().rsplit(" ", 1)[-1]
                cur["kind"] = kind if kind in ("trans", "ddl") else "trans"
                txns.append(cur)
                continue
            if cur is None:
                continue
            r = _ROW_LINE.match(line)
            if r and r.group(1) not in cur["tables"]:
                cur["tables"].append(r.group(1))
    return txns
