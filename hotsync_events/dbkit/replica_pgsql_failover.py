"""PostgreSQL replication: seed (pg_basebackup), promote, re-pair (saving what the old master committed after
the switch, then pg_rewind) and the synchronous switch, for
:class:`hotsync_events.dbkit.replica_pgsql.PostgresReplication` (its methods call these)."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from hotsync_events.dbkit.pgsql import Postgres, ident
from hotsync_events.dbkit.replica import (Link, Position, Promoted, Repaired, ReplicationError, as_user, clean_env,
                                          owner_of, private_dir, publish, run, saved_folder, sha256_file, wait_for,
                                          write_private)
from hotsync_events.dbkit.replica_swap import SeedSwap, start_or_put_back
from hotsync_events.dbkit.replica_pgsql_tools import INCLUDE, PostgresControl, explain, lsn_at

if TYPE_CHECKING:
    from hotsync_events.dbkit.replica_pgsql import PostgresReplication


def seed(repl: PostgresReplication, link: Link, source: Path | None = None, *, log=print,
         keep_previous: str | None = None, restart_previous: bool = True) -> Position:
    """Copy the running master with ``pg_basebackup`` through a fresh slot and follow it. When it fails the
    previous cluster is started again, unless not *restart_previous* (a cluster ``pg_rewind`` left half
    rewound must never run: it stays stopped)."""
    places = SeedSwap.of(repl.root.join(repl.server.datadir))
    if places.interrupted():                # a seed cut short mid-swap: the server must not run on half of it
        repl._control().stop(log=log)
        places.recover(server=repl.label, log=log)
    datadir = repl._datadir()
    note = _half_rewound_note(datadir)
    half = note.read_text() if note.is_file() else None
    if half is not None:      # a cluster left half rewound: replaced here, never started again if this fails
        restart_previous = False
        os.chmod(datadir, 0o700)            # (inside a mount point the seed is staged in it)
    repl._tls(link)
    repl._passfile(link)
    cur = repl._current_settings()
    ctl = repl._control()
    ctl.stop(log=log)
    kept = repl._keep_own_config(datadir)
    owner = owner_of(datadir)
    new = places.new
    places.prepare_new(owner, 0o700)
    try:
        repl._replication_command(link, f"DROP_REPLICATION_SLOT {ident(link.name)} WAIT",
                                  what=f"drop the old slot {link.name}", ok_missing=True)
        argv = [*as_user(owner), repl.server.tool("pg_basebackup"), "-d", repl._channel(link), "-D", str(new),
                "-S", link.name, "-C", "-X", "stream", "-c", "fast", "-w"]
        log(f"{repl.label}: pg_basebackup from {link.master_host}:{link.port} (slot {link.name})")
        try:
            run(argv, server=repl.label, what=f"copy the master {link.master_host}:{link.port} (pg_basebackup)",
                env=clean_env(), timeout=repl.seed_timeout)
        except ReplicationError as exc:
            raise ReplicationError(explain(str(exc))[0]) from None
        repl._restore_own_config(new, kept)
        repl._standby_signal(new)
        base = None if repl.config_dir else new
        if base is not None:
            repl._write_hba(link.master_host, link, base=base)
        places.swap()
        repl._write_include(role="replica", link=link, current=cur)
        if repl.config_dir:
            repl._write_hba(link.master_host, link)
        start_or_put_back(ctl, places, server=repl.label, log=log, restart=False)
        note.unlink(missing_ok=True)        # the seeded cluster runs: the data directory the note spoke of is gone
    except Exception:
        if not (datadir / "PG_VERSION").is_file() and places.aside.is_dir():
            places.recover(server=repl.label, log=log)
        if half is not None and not repl._is_running():
            _never_start(datadir, half.rstrip("\n"))       # the half-rewound cluster is back: unstartable again
        if restart_previous and not repl._is_running():
            try:
                ctl.start(log=log)
            except Exception as exc:
                log(f"{repl.label}: could not restart the previous cluster: {exc}")
        raise
    finally:
        shutil.rmtree(new, ignore_errors=True)
    places.retire(keep_previous, server=repl.label, log=log)
    st = repl._wait_streaming(link, seconds=30)
    pos = repl._replay_position()
    log(f"{repl.label}: seeded from {link.master_host}:{link.port}, {st.state} at {pos}")
    return pos


def _half_rewound_note(datadir: Path) -> Path:
    return datadir.parent / f"{datadir.name}.HALF-REWOUND.txt"


def _never_start(datadir: Path, why: str) -> None:
    """Make a cluster that must never run (``pg_rewind`` stopped half-way) unstartable by anyone: a boot, a
    person's ``systemctl start``: its data directory mode 000 (the server's user cannot enter it; root's
    re-seed replaces it), and a note beside it saying why."""
    os.chmod(datadir, 0)
    write_private(_half_rewound_note(datadir), why + "\n")


#: :func:`seed`, by a name :func:`repair`'s *seed* argument does not hide
_seed_fresh = seed


def promote(repl: PostgresReplication, *, timeout: float = 60.0, dry_run: bool = False, force: bool = False,
            log=print) -> Promoted:
    t0 = time.monotonic()
    q = ("SELECT pg_is_in_recovery(), pg_last_wal_receive_lsn()::text, pg_last_wal_replay_lsn()::text, "
         "(SELECT status FROM pg_stat_wal_receiver), (SELECT latest_end_lsn::text FROM pg_stat_wal_receiver), "
         "(SELECT extract(epoch from now() - last_msg_receipt_time) FROM pg_stat_wal_receiver), "
         "extract(epoch from now() - pg_last_xact_replay_timestamp()), pg_is_wal_replay_paused()")
    with repl._sess() as sess:
        inrec = repl._one(sess, "SELECT pg_is_in_recovery()", what="check the role")[0] == "t"
        r = repl._one(sess, q, what="read the replica status") if inrec else ["f"]
        if r[0] != "t":
            cur = repl._one(sess, "SELECT pg_current_wal_lsn()::text", what="read the position")[0]
            notes = ["not a replica: nothing to promote (already a master)"]
            finished = not dry_run and repl._read_state().get("role") == "replica"
            if finished:
                # a promote begun by an earlier run that stopped after pg_promote(): finish it (the checkpoint
                # that records the new timeline, the master's include)
                repl._q(sess, "CHECKPOINT", what="checkpoint after the promote")
                _write_master_include_after_promote(repl)
                repl._reload(sess)
                notes.append("finished a promote begun earlier: checkpoint, its role written as master")
            return Promoted(server=repl.label, dry_run=dry_run, position=Position(repl.engine, cur or ""),
                            notes=notes, already_master=True, finished_earlier=finished)
        for _ in range(15 if r[3] == "streaming" and not dry_run and not force else 0):
            time.sleep(0.2)         # a master killed a moment ago: its replica sees the stream end at once
            r = repl._one(sess, q, what="read the replica status")
            if r[3] != "streaming":
                break
        _, received, replayed, wr, latest_end, contact, age, paused = r
        streaming = wr == "streaming"
        if streaming and not dry_run and not force:
            raise ReplicationError(f"{repl.label}: the master still streams to this replica: it is alive, and a "
                                   "promote now would make two masters; stop the master's database server (or "
                                   "the master) first, or run hotsync-promote --force. A master whose host lost "
                                   "power is seen gone once wal_receiver_timeout (60 s by default) has passed: "
                                   "run the promote again then")
        unreceived = lsn_at(latest_end) - lsn_at(received) if latest_end and received else 0
        would_lose = ("the master is still connected: promoting now splits the pair (stop the master first)"
                      if streaming else
                      "whatever the master wrote after its last WAL reached this replica"
                      + (f" ({float(contact):.1f} s ago)" if contact else "")
                      + (f"; it had reported WAL up to {latest_end}, {unreceived} bytes more than received"
                         if unreceived > 0 else ""))
        behind = (lsn_at(received) - lsn_at(replayed)) if received and replayed else 0
        if dry_run:
            return Promoted(server=repl.label, dry_run=True, position=Position(repl.engine, replayed or ""),
                            caught_up=behind <= 0, lag_seconds=float(age) if age and behind > 0 else 0.0,
                            not_applied=f"{max(0, behind)} bytes of WAL received but not replayed yet "
                                        "(a promote replays them first)",
                            would_lose=would_lose, notes=[f"WAL receiver: {wr or 'not running'}"])
        if paused == "t":
            repl._q(sess, "SELECT pg_wal_replay_resume()", what="resume the replay")
        stable: dict = {"n": 0, "last": None, "partial": False}

        def caught_up():
            # the startup process waiting for WAL (RecoveryWalStream, RecoveryRetrieveRetryInterval) with the
            # replay position still: every complete record is replayed. A master killed mid-record leaves
            # the received position past the replay one (a partial last record, never replayable).
            rr = repl._one(sess, "SELECT pg_last_wal_receive_lsn()::text, pg_last_wal_replay_lsn()::text, "
                                 "(SELECT wait_event FROM pg_stat_activity WHERE backend_type = 'startup')",
                           what="read the replay position")
            if rr[0] and lsn_at(rr[1]) >= lsn_at(rr[0]):
                return True
            stable["n"] = stable["n"] + 1 if rr[1] == stable["last"] else 0
            stable["last"] = rr[1]
            waiting = (rr[2] or "").startswith("Recovery") and rr[2] != "RecoveryPause"
            if rr[0] and not (waiting and not streaming):
                return False
            stable["partial"] = bool(rr[0])
            return stable["n"] >= (5 if rr[0] else 3)
        done = bool(wait_for(caught_up, seconds=timeout, step=0.1))
        if not done and not force:
            raise ReplicationError(f"{repl.label}: not caught up after {timeout:.0f} s (received {received}, "
                                   f"replayed {replayed}); run again with a longer timeout (or force)")
        takeover = repl._one(sess, "SELECT pg_last_wal_replay_lsn()::text", what="read the replay position")[0]
        left = max(5, int(timeout - (time.monotonic() - t0)))
        ok = repl._one(sess, f"SELECT pg_promote(true, {left})", what="promote (pg_promote)")[0]
        if ok != "t":
            raise ReplicationError(f"{repl.label}: pg_promote did not finish within {left} s")
        # pg_control records the new timeline only at the first checkpoint after the promote; pg_rewind
        # (the re-pair of the old master) reads it from there and would see "same timeline, no rewind"
        repl._q(sess, "CHECKPOINT", what="checkpoint after the promote")
        tli = repl._one(sess, "SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)",
                        what="read the timeline")[0]
    _write_master_include_after_promote(repl)
    with repl._sess() as sess:
        repl._reload(sess)
    waited = time.monotonic() - t0
    pos = Position(repl.engine, takeover or "", int(tli or '1', 16))
    log(f"{repl.label}: promoted at {takeover}, now on timeline {int(tli or '1', 16)} after {waited:.2f} s")
    return Promoted(server=repl.label, dry_run=False, position=pos, waited=waited, caught_up=done,
                    lag_seconds=0.0 if done else None, would_lose=would_lose,
                    notes=([] if done else ["promoted before the replay caught up (force)"])
                    + (["the last WAL record received was incomplete when the master stopped: dropped"]
                       if done and stable["partial"] else []))


def _write_master_include_after_promote(repl: PostgresReplication) -> None:
    """The include for the master role without a replica yet: the standby settings and the
    synchronous standby dropped (no replica to wait for until the re-pair)."""
    path = repl.root.join(repl.state_dir) / INCLUDE
    if not path.is_file():
        return
    lines = [ln for ln in path.read_text().splitlines()
             if not re.match(r"(primary_conninfo|primary_slot_name|synchronous_standby_names)\s*=", ln)]
    lines[0] = lines[0].replace("role replica", "role master (promoted, no replica yet)")
    lines.append("synchronous_standby_names = ''")
    write_private(path, "\n".join(lines) + "\n", owner=repl._owner())
    repl._write_state(role="master", synchronous=False)


def repair(repl: PostgresReplication, link: Link, save_dir: Path, takeover: Position, *, seed: Path | None = None,
           log=print) -> Repaired:
    """On the old master: save what it committed after the switch to the new master's timeline, then
    ``pg_rewind`` from the new master (a full seed when that fails) and follow it."""
    datadir = repl._datadir()
    owner = owner_of(datadir)
    repl._tls(link)
    repl._passfile(link)
    ctl = repl._control()
    if repl._is_running():
        with repl._sess() as sess:
            inrec = repl._one(sess, "SELECT pg_is_in_recovery()", what="check the role")[0] == "t"
        if inrec:
            st = repl.status(link)
            if st.connected and (st.master or "").startswith(link.master_host + ":"):
                return Repaired(server=repl.label, diverged=False, transactions=0, saved_to=None, method="follow",
                                state="replica", report={"note": "already a replica of the new master"})
        ctl.stop(log=log)
    # where the new master's timeline left ours
    ident_out = repl._replication_command(link, "IDENTIFY_SYSTEM", what="identify the new master")
    new_tli = int(ident_out.split("\t")[1])
    history = repl._replication_command(link, f"TIMELINE_HISTORY {new_tli}", what="read its timeline history") \
        if new_tli > 1 else ""
    old_tli, seg_size = _control_data(repl, datadir)
    switch = None
    for ln in history.splitlines():
        m = re.match(r"\s*(?:\S+\.history\t)?(\d+)\s+([0-9A-Fa-f]+/[0-9A-Fa-f]+)", ln)
        if m and int(m.group(1)) == old_tli:
            switch = m.group(2)
    report: dict = {"engine": repl.engine, "server": repl.label, "takeover": str(takeover),
                    "old_timeline": old_tli, "new_timeline": new_tli, "switch_point": switch}
    commits, listing, known = _diverged_commits(repl, datadir, old_tli, switch, seg_size)
    diverged = not known or bool(commits)        # unknown: save everything rather than guess
    if not known:
        report["note"] = ("the old master's WAL after the switch point cannot be read (or its timeline is not "
                          "an ancestor of the new master's): saved whole")
    saved = None
    if diverged:
        saved = _save_divergence(repl, datadir, Path(save_dir), old_tli, switch, seg_size, commits, listing,
                                      report, log=log)
    else:
        log(f"{repl.label}: nothing committed after the switch point {switch} on timeline {old_tli}")
    # rewind (the cluster is stopped cleanly or crashed: pg_rewind finishes the crash recovery itself)
    kept = repl._keep_own_config(datadir)
    cur: dict = {}
    method = "rewind"
    argv = [*as_user(owner), repl.server.tool("pg_rewind"), f"--target-pgdata={datadir}",
            f"--source-server={repl._channel(link, dbname='postgres')}"]
    if repl.config_dir:
        argv.append(f"--config-file={repl._config_base() / 'postgresql.conf'}")
    # the new master's pg_control must show its new timeline (a checkpoint after the promote)
    subprocess.run([repl.server.tool("psql"), "-X", "-q", "-w", "-d", repl._channel(link, dbname="postgres"),
                    "-c", "CHECKPOINT"], capture_output=True, env=clean_env(), timeout=300)
    try:
        cp = run(argv, server=repl.label, what=f"rewind from the new master {link.master_host}:{link.port}",
                 env=clean_env(), timeout=repl.seed_timeout)
        if diverged and b"no rewind required" in cp.stdout + cp.stderr:
            raise ReplicationError("pg_rewind saw nothing to rewind although this server diverged")
    except ReplicationError as exc:
        log(f"{repl.label}: pg_rewind failed ({exc}); re-seeding from the new master instead")
        method = "seed"
    if method == "seed":
        repl._restore_own_config(datadir, kept)
        try:
            _seed_fresh(repl, link, log=log, restart_previous=False)
        except Exception as exc:
            where = f"; what it committed after the takeover was saved in {saved}" if saved is not None else ""
            why = (f"{repl.label}: pg_rewind failed and the re-seed from {link.master_host}:{link.port} failed too "
                   f"({exc}). Its data directory may be half rewound: it is left STOPPED and made unstartable "
                   f"(mode 000){where}. Once the new master can be reached, re-seed it: hotsync replicas setup "
                   "--seed")
            if not repl._is_running():      # (a seed that failed after its cluster started: that one is sound)
                _never_start(datadir, why)
            raise ReplicationError(why) from None
    else:
        repl._restore_own_config(datadir, kept)
        repl._standby_signal(datadir)
        slots = datadir / "pg_replslot"
        for s in (slots.iterdir() if slots.is_dir() else []):
            shutil.rmtree(s, ignore_errors=True)       # the old master's slot for its former replica
        repl._write_include(role="replica", link=link, current=cur)
        repl._write_hba(link.master_host, link)
        ctl.start(log=log)
    st = repl._wait_streaming(link, seconds=30)
    report["status"] = st.state
    if saved is not None:
        write_private(saved / "report.json", json.dumps(report, indent=1, sort_keys=True))
    log(f"{repl.label}: re-paired ({method}) as a replica of {link.master_host}:{link.port}: {st.state}")
    return Repaired(server=repl.label, diverged=diverged, transactions=len(commits),
                    saved_to=str(saved) if saved else None, method=method,
                    state="replica" if st.connected else st.state, report=report)


def _control_data(repl: PostgresReplication, datadir: Path) -> tuple[int, int]:
    cp = run([*as_user(owner_of(datadir)), repl.server.tool("pg_controldata"), "-D", str(datadir)],
             server=repl.label, what="read pg_control", env=clean_env(LC_ALL="C"), timeout=60)
    text = cp.stdout.decode()
    found = [re.search(r"Latest checkpoint's TimeLineID:\s+(\d+)", text),
             re.search(r"Bytes per WAL segment:\s+(\d+)", text)]
    if found[0] is None or found[1] is None:
        raise ReplicationError(f"{repl.label}: pg_controldata shows no timeline or WAL segment size")
    tli, seg = int(found[0].group(1)), int(found[1].group(1))
    mrl = re.search(r"Minimum recovery ending loc's timeline:\s+(\d+)", text)
    if mrl and int(mrl.group(1)) > tli:
        tli = int(mrl.group(1))
    return tli, seg


def _segment_name(tli: int, at: str, seg_size: int) -> str:
    per_id = 0x100000000 // seg_size
    segno = lsn_at(at) // seg_size
    return f"{tli:08X}{segno // per_id:08X}{segno % per_id:08X}"


def _waldump(repl: PostgresReplication, datadir: Path, tli: int, start: str, seg_size: int) -> tuple[str, bool]:
    """``pg_waldump`` of the old timeline from *start* to the end of its WAL: (listing, complete).

    Reading stops at the end of the WAL with an "invalid record" style error, which is the normal end.
    Not complete: the segment holding *start* is gone (recycled), so what followed is unknown."""
    # the start segment is named: without it pg_waldump takes the segment size from whatever file it
    # finds first, and a pre-allocated, still zeroed segment makes it fail
    first = _segment_name(tli, start, seg_size)
    if not (datadir / "pg_wal" / first).is_file():
        return "", False
    argv = [*as_user(owner_of(datadir)), repl.server.tool("pg_waldump"), "-p", str(datadir / "pg_wal"),
            f"--timeline={tli}", f"--start={start}", first]
    # run in the data directory: as the cluster's owner, pg_waldump cannot go back to a working directory it
    # may not enter (root's 0700 home, a private checkout) and fails
    cp = subprocess.run(argv, capture_output=True, text=True, env=clean_env(LC_ALL="C"), timeout=600, cwd=str(datadir))
    if cp.returncode == 0:
        return cp.stdout, True
    err = cp.stderr
    if not cp.stdout and "could not find a valid record after" in err:
        return "", True                     # the WAL ends at the switch point: nothing after it
    if not cp.stdout and ("could not find file" in err or "could not open file" in err):
        return "", False
    if re.search(r"invalid record length|could not find file|end of WAL|invalid magic number|"
                 r"record with incorrect prev-link|contrecord is requested|invalid resource manager", err):
        return cp.stdout, True
    raise ReplicationError(f"{repl.label}: cannot read the WAL after {start}: {err.strip()[-300:]}")


def _diverged_commits(repl: PostgresReplication, datadir: Path, tli: int, switch: str | None,
                      seg_size: int) -> tuple[list[dict], str, bool]:
    """The transactions the old master committed after *switch* on its timeline; (commits, the WAL
    listing, whether that is known for sure)."""
    if switch is None:
        return [], "", False
    listing, complete = _waldump(repl, datadir, tli, switch, seg_size)
    commits = []
    for ln in listing.splitlines():
        m = re.search(r"rmgr: Transaction .*tx:\s+(\d+), lsn: (\S+), .*desc: COMMIT(?:_PREPARED)? (\S+ \S+)", ln)
        if m:
            commits.append({"xid": int(m.group(1)), "lsn": m.group(2).rstrip(","), "time": m.group(3)})
    return commits, listing, complete


def _save_divergence(repl: PostgresReplication, datadir: Path, save_dir: Path, tli: int, switch: str | None,
                     seg_size: int, commits: list[dict], listing: str, report: dict, *, log=print) -> Path:
    owner = owner_of(datadir)
    sock_host = repl.state_dir.rstrip("/") + "/sock"
    sock = private_dir(repl.root.join(sock_host), owner)
    private = replace(repl.server, socket_dir=sock_host)
    for signal_file in ("standby.signal", "recovery.signal"):      # saved as the primary it was
        (datadir / signal_file).unlink(missing_ok=True)
    ctl = PostgresControl(repl)
    ctl.start(log=log, server=private, extra=("-c", "listen_addresses=", "-c", f"unix_socket_directories={sock}",
                                              "-c", "default_transaction_read_only=on", "-c", "primary_conninfo=",
                                              "-c", "synchronous_standby_names=", "-c", "archive_mode=off"))
    try:
        with saved_folder(save_dir) as tmp:
            private.dump(tmp / "old-master.tar", None, log=log)
            tables = _relations(repl, private, listing)
            (tmp / "wal").mkdir()
            if switch is not None:
                first = _segment_name(tli, switch, seg_size)
                for p in sorted((datadir / "pg_wal").iterdir()):
                    if re.fullmatch(r"[0-9A-F]{24}", p.name) and p.name[:8] == f"{tli:08X}" and p.name >= first:
                        shutil.copy2(p, tmp / "wal" / p.name)
            write_private(tmp / "diverged-wal.txt", listing or "(no switch point: the whole cluster is saved)\n")
            report.update({
                "saved": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "transactions": len(commits),
                "first": commits[0]["time"] if commits else None, "last": commits[-1]["time"] if commits else None,
                "commits": commits[:1000], "tables": tables,
                "files": {str(p.relative_to(tmp)): sha256_file(p) for p in sorted(tmp.rglob("*")) if p.is_file()},
                "how_to_use": "old-master.tar is the old master as it was before the rewind (roles and every "
                              "database, the hotsync dump format: restore with hotsync restore-databases or "
                              "pg_restore the db-NNN.pgdump members); diverged-wal.txt lists the WAL records "
                              "after the switch point, wal/ holds those segments"})
            write_private(tmp / "report.json", json.dumps(report, indent=1, sort_keys=True))
            final = publish(tmp, save_dir)
    finally:
        run([*as_user(owner), repl.server.tool("pg_ctl"), "stop", "-D", str(datadir), "-m", "fast", "-w", "-t",
             str(int(repl.stop_timeout))], server=repl.label, what="stop the private instance",
            env=clean_env(), timeout=repl.stop_timeout + 30)
    log(f"{repl.label}: saved the old master ({len(commits)} transaction(s) after the switch point {switch}) "
        f"into {final}")
    return final


def _relations(repl: PostgresReplication, private: Postgres, listing: str) -> dict[str, int]:
    """Tables the diverged WAL records touched (``rel <tablespace>/<db>/<filenode>``), by name."""
    refs: dict[tuple[int, int], int] = {}
    for m in re.finditer(r"rel (\d+)/(\d+)/(\d+)", listing):
        key = (int(m.group(2)), int(m.group(3)))
        refs[key] = refs.get(key, 0) + 1
    out: dict[str, int] = {}
    if not refs:
        return out
    with private._session() as sess:
        dbs = {int(r[0]): r[1] for r in private.query(
            sess, "SELECT oid, datname FROM pg_database WHERE datallowconn", what="list databases")}
        for dboid in sorted({d for d, _ in refs}):
            if dboid not in dbs:
                continue
            nodes = sorted(f for d, f in refs if d == dboid)
            rows = private.query(sess, "SELECT pg_relation_filenode(c.oid), c.oid::regclass::text FROM pg_class c "
                                       "WHERE c.relkind IN ('r', 'p', 'm') AND pg_relation_filenode(c.oid) = ANY("
                                       f"ARRAY[{','.join(map(str, nodes))}]::oid[])", db=dbs[dboid],
                                 what=f"name the tables of {dbs[dboid]}")
            for node, name in rows:
                out[f"{dbs[dboid]}.{name}"] = refs[(dboid, int(node))]
    return out


def set_synchronous(repl: PostgresReplication, link: Link, on: bool, *, log=print) -> None:
    """``synchronous_standby_names`` on the master (a commit waits until the replica flushed it; with the
    replica down, commits WAIT: PostgreSQL has no fall-back timeout). Nothing to set on a replica."""
    with repl._sess() as sess:
        if repl._one(sess, "SELECT pg_is_in_recovery()", what="check the role")[0] == "t":
            repl._write_state(synchronous=on)
            log(f"{repl.label}: replica side: nothing to set (application_name={link.name})")
            return
        if on and not repl._standby_streaming(sess, link):
            raise ReplicationError(f"{repl.label}: the replica ({link.name}) does not stream: synchronous mode "
                                   "now would hold every commit until it does")
        cur = repl._settings(sess, ("listen_addresses", "wal_level", "max_wal_senders", "max_replication_slots"))
        repl._write_include(role="master", link=link, current=cur, synchronous=on)
        repl._reload(sess, expect={"synchronous_standby_names": ident(link.name) if on else ""})
    log(f"{repl.label}: synchronous replication {'on' if on else 'off'} (synchronous_standby_names)")
