#!/usr/bin/env bash
# The promote and the re-pair, shown step by step: the master dies, the slave is promoted, the old master
# comes back and is fenced, it is re-paired as the new slave, the new master syncs to it.
#
#   bash scripts/demo-promote.sh MASTER_ROOT SLAVE_ROOT   # a pair the demo already made and synced
#   bash scripts/demo-promote.sh                          # makes its own pair on loopback first
#
# Every command is one a sysadmin types (config, signal-event, hotsync, hotsync-promote), with
# HOTSYNC_ROOT naming the host. Both "hosts" are directories of this machine, on 127.0.0.1.
set -u
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '\033[2m%s$' "${HOST:-}"; printf ' %q' "$@"; printf '\033[0m\n'; "$@"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
on() { local r=$1; shift; HOST=$(basename "$r") HOTSYNC_ROOT=$r run "$@"; }
# same_tree MASTER SLAVE: same names, contents and link targets (a slave's links are munged until a promote)
same_tree() { python3 "$(dirname "$0")/same-tree.py" "$1" "$2"; }
kill_daemons() { local f pid; for f in "$1"/run/hotsync/*.pid; do [ -f "$f" ] || continue; pid=$(cut -d' ' -f1 "$f")
  kill -9 -- "-$pid" 2>/dev/null || kill -9 "$pid" 2>/dev/null; done; true; }

OWN=""
if [ $# -ge 2 ]; then
  M=$1; S=$2
else
  OWN=$(mktemp -d /tmp/hotsync-demo-promote.XXXXXX); M=$OWN/master; S=$OWN/slave; mkdir -p "$M" "$S"
  P=$(free_port)
  trap 'for r in "$M" "$S"; do HOTSYNC_ROOT=$r config setprop hotsync status disabled >/dev/null 2>&1;
        HOTSYNC_ROOT=$r signal-event nethserver-hotsync-save >/dev/null 2>&1; kill_daemons "$r"; done; rm -rf "$OWN"' EXIT
  say "a master and a slave, paired on loopback (port $P)"
  on "$S" config setprop rsyncd password Demo-pass-1 TCPPort "$(free_port)"
  on "$S" config setprop hotsync role slave MasterHost 127.0.0.1 port "$P"
  on "$S" signal-event nethserver-hotsync-save >/dev/null
  on "$M" config setprop rsyncd password Demo-pass-1
  on "$M" config setprop hotsync role master SlaveHost 127.0.0.1 port "$P" realtime disabled
  on "$M" signal-event nethserver-hotsync-save >/dev/null
  fp() { HOTSYNC_ROOT=$1 hotsync status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["fingerprint"])'; }
  on "$S" config setprop hotsync MasterFingerprint "$(fp "$M")"       # fingerprints compared by a person
  on "$S" signal-event nethserver-hotsync-save >/dev/null
  mkdir -p "$M/etc/hotsync/include.d"; echo /srv/demo > "$M/etc/hotsync/include.d/demo.include"   # the master's only
  mkdir -p "$M/srv/demo"; for i in $(seq 1 20); do echo "document $i" > "$M/srv/demo/doc$i.txt"; done
  on "$M" hotsync sync --accept-fingerprint "$(fp "$S")"
fi

DATA=$(cat "$M"/etc/hotsync/include.d/*.include 2>/dev/null | grep '^/' | head -n 1)
DATA=${DATA:-/srv/demo}
# no copying of lists by hand: every push ships the master's include.d/exclude.d to the slave's
# var/lib/hotsync/peer/lists/, and the promote installs them (the new master pushes what the old one did)

say "the master dies (its HotSync daemons are killed); what it writes now never reaches the slave"
for f in "$M"/run/hotsync/hotsync-*.pid; do [ -f "$f" ] && kill -9 -- "-$(cut -d' ' -f1 "$f")" 2>/dev/null; done
mkdir -p "$M$DATA"; for i in $(seq 1 12); do echo "late $i" > "$M$DATA/late$i.txt"; done

say "on the slave: look first"
on "$S" hotsync-promote --dry-run
say "promote (--force: we know the master is down, it pushed a moment ago)"
on "$S" hotsync-promote --yes --force || { echo "the promote failed (exit $?)"; exit 1; }
on "$S" hotsync status | head -8
for l in "$S$DATA"/*; do [ -L "$l" ] && echo "links written back as the master had them: ${l#"$S"} -> $(readlink "$l")"; done
say "the new master's lists are the old master's (installed by the promote)"
on "$S" hotsync paths | grep -E 'include.d|exclude.d' || { echo "the master's lists were not installed"; exit 1; }

say "the old master comes back with its schedule: its push is refused, it learns it was fenced"
on "$M" signal-event nethserver-hotsync-save >/dev/null
on "$M" hotsync sync
on "$M" hotsync status | head -4

say "re-pair (docs/promote.md, section 7): the new master names its slave and stops fencing it..."
on "$S" config setprop hotsync SlaveHost 127.0.0.1 MasterHost '' realtime disabled   # (realtime: the demo pushes by hand)
on "$S" signal-event nethserver-hotsync-save >/dev/null
on "$S" hotsync status | grep -E '^(health|WAITING)'
say "...the old master becomes the slave (it trusts the new master's certificate, and keeps aside what it replaces)"
on "$M" config setprop hotsync role slave MasterHost 127.0.0.1
on "$M" signal-event nethserver-hotsync-save >/dev/null
say "the first push in the new direction is a person's: it shows the dry run; the old master's late files are kept aside"
fp() { HOTSYNC_ROOT=$1 hotsync status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["fingerprint"])'; }
on "$S" hotsync sync --accept-fingerprint "$(fp "$M")" --allow-deletions
on "$M" hotsync status | grep -A1 'kept aside' | head -4
if same_tree "$S$DATA" "$M$DATA"; then echo "trees equal ($DATA): the new slave holds the new master's data"
else echo "trees DIFFER"; exit 1; fi
late=$(find "$M/var/lib/hotsync/kept" -name 'late*.txt' | wc -l)
echo "kept aside on the new slave: $late of the old master's 12 late files (nothing it wrote after the promote is lost)"
[ "$late" = 12 ] || exit 1
