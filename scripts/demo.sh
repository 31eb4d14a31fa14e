#!/usr/bin/env bash
# make demo: a HotSync master and slave on this machine, paired with the manual's commands, a push, a
# change, a second push, and what `hotsync status` says on both sides. Everything lives in a temp dir;
# the daemons started here are stopped at exit (also on ^C or an error).
set -euo pipefail

say()  { printf '\n\033[1m== %s\033[0m\n' "$*"; }
note() { printf '   %s\n' "$*"; }
# same_tree MASTER SLAVE: same names, contents and link targets (a slave's links are munged until a promote)
same_tree() { python3 "$(dirname "$0")/same-tree.py" "$1" "$2"; }
# run ROOT-NAME COMMAND...: show the command as a sysadmin would type it on that host, then run it
run()  { local who=$1; shift; printf '%s# %s\n' "$who" "$*"
         if [ "$who" = master ]; then HOTSYNC_ROOT=$M "$@"; else HOTSYNC_ROOT=$S "$@"; fi; }
quiet() { local who=$1; shift; printf '%s# %s\n' "$who" "$*"
          local out; if out=$( if [ "$who" = master ]; then HOTSYNC_ROOT=$M "$@"; else HOTSYNC_ROOT=$S "$@"; fi 2>&1 ); then
            [ -n "$out" ] && printf '%s\n' "$out" | tail -n 1 | sed 's/^/   /'; true; else printf '%s\n' "$out"; return 1; fi; }

for c in config signal-event hotsync rsync openssl; do
  command -v "$c" >/dev/null || { echo "demo: '$c' is missing (run: make demo, which installs what it needs)"; exit 1; }
done
command -v stunnel4 >/dev/null || command -v stunnel >/dev/null || { echo "demo: stunnel4 is missing"; exit 1; }

BASE=$(mktemp -d /tmp/hotsync-demo.XXXXXX)
M=$BASE/master S=$BASE/slave
mkdir -p "$M" "$S"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

cleanup() {
  set +e
  say "Cleaning up: stopping the daemons of both roots and removing $BASE"
  for r in "$M" "$S"; do
    HOTSYNC_ROOT=$r config setprop hotsync status disabled >/dev/null 2>&1
    HOTSYNC_ROOT=$r signal-event nethserver-hotsync-save >/dev/null 2>&1
    for pidfile in "$r"/run/hotsync/*.pid; do       # whatever is still running from this demo, by pid
      [ -f "$pidfile" ] && kill "$(cut -d' ' -f1 "$pidfile")" 2>/dev/null
    done
  done
  rm -rf "$BASE"
}
trap cleanup EXIT

say "Two hosts on one machine: the master is the root $M, the slave is $S"
note "Each root is a whole host: its own config database, daemons, logs and data."
note "They talk over TLS on 127.0.0.1:$PORT, as two boxes would over the LAN."

say "On the slave: the shared password, the role, the master's address, then the save event"
quiet slave config setprop rsyncd password S3cret-demo
quiet slave config setprop hotsync role slave MasterHost 127.0.0.1 port "$PORT"
run slave signal-event nethserver-hotsync-save
note "The slave made its TLS key and certificate and runs stunnel on port $PORT: the only way in. For"
note "each connection whose certificate it trusts, stunnel runs rsync; nothing else listens."

say "On the master: the same password, the role, the slave's address, the save event"
quiet master config setprop rsyncd password S3cret-demo
quiet master config setprop hotsync role master SlaveHost 127.0.0.1 port "$PORT" realtime disabled
note "(realtime disabled: this demo pushes by hand, step by step, instead of on every change)"
quiet master signal-event nethserver-hotsync-save
note "The master made its own key and certificate too: each side will trust only the other's."

say "Mutual TLS: each side pins the other's certificate, after a person compared the fingerprints"
MFP=$(HOTSYNC_ROOT=$M hotsync status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["fingerprint"])')
SFP=$(HOTSYNC_ROOT=$S hotsync status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["fingerprint"])')
note "master# hotsync status   ->  certificate: $MFP"
note "slave#  hotsync status   ->  certificate: $SFP"
quiet slave config setprop hotsync MasterFingerprint "$MFP"
quiet slave signal-event nethserver-hotsync-save
note "From now on the slave refuses, at the TLS handshake, every client but the master's certificate."
note "The master pins the slave's at its first push: on a terminal \`hotsync sync\` shows it and asks;"
note "a script names it, as below. The schedule (every 15 minutes) and the notifier never pin: they wait."

say "Some data on the master, and a list that says it must reach the slave"
mkdir -p "$M/srv/shop/invoices" "$M/etc/hotsync/include.d"
echo "/srv/shop" > "$M/etc/hotsync/include.d/shop.include"
for i in 1 2 3; do echo "invoice $i" > "$M/srv/shop/invoices/2026-00$i.txt"; done
mkdir -p "$M/srv/shop/invoices/2025"      # last year's, archived: most of the shop's files
for i in $(seq -w 1 40); do echo "invoice 2025-$i" > "$M/srv/shop/invoices/2025/$i.txt"; done
echo "open 9-18" > "$M/srv/shop/hours.txt"
ln -s invoices/2026-001.txt "$M/srv/shop/first-invoice"
note "master# cat /etc/hotsync/include.d/shop.include  ->  /srv/shop"
(cd "$M/srv" && find shop -not -path 'shop/invoices/2025/*' | sort | sed 's/^/   master: \/srv\//')
note "   (and 40 archived invoices in /srv/shop/invoices/2025/)"

say "Nextcloud on the master (a stand-in tree): its plugin says what travels and what stays home"
NC=$M/var/lib/nethserver/nextcloud
for r in "$M" "$S"; do    # both hosts have Nextcloud's web server account, as a NethServer with nextcloud does
  mkdir -p "$r/etc"; echo "apache:x:$(id -u):$(id -g):Apache:/usr/share/httpd:/sbin/nologin" >> "$r/etc/passwd"
  echo "apache:x:$(id -g):" >> "$r/etc/group"
done
mkdir -p "$M/usr/share/nextcloud/config" "$NC/admin/files" "$NC/admin/cache"
printf "<?php\n\$CONFIG = array (\n  'maintenance' => true,\n);\n" > "$M/usr/share/nextcloud/config/config.php"
echo "quarterly report" > "$NC/admin/files/report.odt"
echo "rebuilt by nextcloud" > "$NC/admin/cache/thumb.bin"
printf 'master# hotsync paths\n'
HOTSYNC_ROOT=$M hotsync paths | grep -E 'nextcloud|shop|mysql|postgresql' | sed 's/^/   /' | head -n 14
note "(the master died during a Nextcloud upgrade: its config.php still says 'maintenance' => true)"

say "First push, by a person: it pins the slave's certificate"
run master hotsync sync --accept-fingerprint "$SFP"
(cd "$S/srv" && find shop | sort | sed 's/^/   slave:  \/srv\//')
note "slave:  /var/lib/nethserver/nextcloud/admin/files/report.odt  $(test -f "$S/var/lib/nethserver/nextcloud/admin/files/report.odt" && echo arrived)"
note "slave:  /var/lib/nethserver/nextcloud/admin/cache/  $(test -e "$S/var/lib/nethserver/nextcloud/admin/cache/thumb.bin" && echo 'arrived (wrong!)' || echo 'stayed home (excluded by the nextcloud plugin)')"

say "A change on the master: one file edited, one deleted, one added"
echo "open 8-20" > "$M/srv/shop/hours.txt"
rm "$M/srv/shop/invoices/2026-002.txt"
echo "invoice 4" > "$M/srv/shop/invoices/2026-004.txt"
run master hotsync sync --dry-run
note "The dry run changed nothing. Now the real push:"
run master hotsync sync
note "slave# cat /srv/shop/hours.txt  ->  $(cat "$S/srv/shop/hours.txt")"
if same_tree "$M/srv/shop" "$S/srv/shop"; then note "The slave's /srv/shop is now identical to the master's."
  note "(slave# readlink /srv/shop/first-invoice  ->  $(readlink "$S/srv/shop/first-invoice"): a slave stores links munged, where they lead nowhere, until a promote writes them back)"
else note "The trees differ!"; exit 1; fi

. "$(dirname "$0")/demo-databases.sh"     # a MariaDB and a PostgreSQL database travel too

say "The status of both sides"
run master hotsync status
echo
run slave hotsync status
note "Each side's own certificate is the one its peer pinned (mutual TLS)."

say "Real time: the notifier pushes each change to the slave as it happens"
note "With \`config setprop hotsync realtime enabled\` (the default) hotsync daemon runs it on the master."
note "This demo keeps realtime disabled and runs it once in the foreground (--force):"
printf 'master# hotsync watch --force &\n'
HOTSYNC_ROOT=$M hotsync watch --force >"$BASE/watch.log" 2>&1 & WATCH=$!
trap 'kill "$WATCH" 2>/dev/null; cleanup' EXIT
for _ in $(seq 200); do grep -qs '"full_syncs": [1-9]' "$M/run/hotsync/realtime.json" && break; sleep 0.1; done
AFTER=$(python3 - "$M/srv/shop/offer.txt" "$S/srv/shop/offer.txt" <<'PY'
import sys, time
m, s = sys.argv[1], sys.argv[2]
t0 = time.monotonic()
with open(m, "w") as f:
    f.write("special offer: 2 for 1\n")
while time.monotonic() - t0 < 10:
    try:
        if open(s).read() == "special offer: 2 for 1\n":
            break
    except OSError:
        pass
    time.sleep(0.005)
print(f"{time.monotonic() - t0:.2f} s")
PY
)
note "master# echo 'special offer: 2 for 1' > /srv/shop/offer.txt"
note "slave#  cat /srv/shop/offer.txt  ->  $(cat "$S/srv/shop/offer.txt" 2>/dev/null || echo '(not there!)')   ($AFTER after the write)"
sleep 1.2    # the notifier writes its status at most once a second
run master hotsync status | grep -A5 '^realtime:' || true
kill "$WATCH"; wait "$WATCH" 2>/dev/null || true
trap cleanup EXIT
[ -f "$S/srv/shop/offer.txt" ] || { note "The file did not reach the slave!"; exit 1; }

say "A safety net: deleting most of the data on the master does not empty the slave"
rm -r "$M"/srv/shop/invoices/*
rm "$M/srv/shop/hours.txt"
run master hotsync sync || note "(exit status $?: held back, the slave kept everything)"
note "(no mail server runs on this machine, so the alert mail to MailTo could not go; it is in hotsync status)"
note "slave# ls /srv/shop/invoices  ->  $(ls "$S/srv/shop/invoices" | tr '\n' ' ')"
note "If the deletions were meant: hotsync sync --allow-deletions"

say "Disaster: the master dies. The slave is promoted, the old master is fenced, then re-paired (issue 7)"
bash "$(dirname "$0")/demo-promote.sh" "$M" "$S"
say "Nextcloud on the new master: the promote ran its plugin's steps (owners, then maintenance off)"
note "new master# grep maintenance /usr/share/nextcloud/config/config.php  ->  $(grep -o "'maintenance' => [a-z]*" "$S/usr/share/nextcloud/config/config.php" || echo 'no maintenance line')"
note "new master# ls -n /var/lib/nethserver/nextcloud/admin/files  ->  $(ls -n "$S/var/lib/nethserver/nextcloud/admin/files" | awk 'NR>1 {print $3":"$4, $9}')"
