# Sourced by scripts/demo.sh (needs its say/note/run/quiet helpers and $M, $S): a MariaDB and a
# PostgreSQL server in each root, a database on the master, a push, then `hotsync restore-databases`
# on the slave shows it there. The servers are private (unix sockets under each root, no TCP) and
# leave their pids in <root>/run/hotsync/*.pid, which demo.sh's cleanup kills.

demo_db_servers() {
  local r=$1 pg_bin pw
  pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  mkdir -p "$r/run/hotsync" "$r/run/mysqld" "$r/var/lib/postgresql" "$r/run/postgresql" "$r/etc/hotsync-demo"
  chmod 755 "$r" "$BASE"
  # MariaDB: root logs in through the socket with a password kept in a 0600 file
  mariadb-install-db --no-defaults --datadir="$r/var/lib/mysql" --user=root --skip-test-db \
    --auth-root-authentication-method=normal >/dev/null 2>&1
  mariadbd --no-defaults --datadir="$r/var/lib/mysql" --socket="$r/run/mysqld/mysqld.sock" \
    --pid-file="$r/run/hotsync/mysqld-demo.pid" --skip-networking --user=root \
    --log-error="$r/var/lib/mysql/error.log" </dev/null >/dev/null 2>&1 &
  pw="Demo-$(basename "$r")-my1"
  for _ in $(seq 100); do mariadb --no-defaults -S "$r/run/mysqld/mysqld.sock" -uroot -e 'SELECT 1' >/dev/null 2>&1 && break; sleep 0.1; done
  mariadb --no-defaults -S "$r/run/mysqld/mysqld.sock" -uroot -e "ALTER USER root@localhost IDENTIFIED BY '$pw'"
  (umask 077; echo "$pw" > "$r/etc/hotsync-demo/mysql.pw")
  HOTSYNC_ROOT=$r config setprop mysqld PasswordFile /etc/hotsync-demo/mysql.pw >/dev/null
  # PostgreSQL refuses to run as root: the cluster belongs to nobody
  pw="Demo-$(basename "$r")-pg1"
  echo "$pw" > "$r/run/postgresql/initdb.pw"
  chown nobody "$r/var/lib/postgresql" "$r/run/postgresql" "$r/run/postgresql/initdb.pw"
  runuser -u nobody -- "$pg_bin/initdb" -D "$r/var/lib/postgresql/main" -U postgres --auth-local=scram-sha-256 \
    --auth-host=reject --pwfile="$r/run/postgresql/initdb.pw" -E UTF8 --locale=C --no-sync >/dev/null
  rm -f "$r/run/postgresql/initdb.pw"
  runuser -u nobody -- "$pg_bin/postgres" -D "$r/var/lib/postgresql/main" -k "$r/run/postgresql" \
    -c listen_addresses= </dev/null >"$r/var/lib/postgresql/server.log" 2>&1 &
  for _ in $(seq 100); do [ -S "$r/run/postgresql/.s.PGSQL.5432" ] && break; sleep 0.1; done
  head -n 1 "$r/var/lib/postgresql/main/postmaster.pid" > "$r/run/hotsync/postgres-demo.pid"
  (umask 077; echo "$pw" > "$r/etc/hotsync-demo/pg.pw")
  HOTSYNC_ROOT=$r config setprop postgresql PasswordFile /etc/hotsync-demo/pg.pw RunAs '' \
    DataDir /var/lib/postgresql/main >/dev/null
}

demo_db_key() {  # demo_db_key ROOT KEY: make sure the plugin's key exists before setprop
  HOTSYNC_ROOT=$1 hotsync plugins >/dev/null 2>&1 || true      # installs the plugins' schemas in that root
  [ -n "$(HOTSYNC_ROOT=$1 config get "$2" 2>/dev/null)" ] || HOTSYNC_ROOT=$1 config set "$2" service >/dev/null
}

if ! command -v mariadbd >/dev/null && [ ! -x /usr/sbin/mariadbd ] || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  say "Databases: skipped (mariadb-server or postgresql is not installed)"
  return 0
fi
say "Databases: a MariaDB and a PostgreSQL server on each host (private, sockets under each root)"
for r in "$M" "$S"; do demo_db_key "$r" mysqld; demo_db_key "$r" postgresql; demo_db_servers "$r"; done
note "Their raw data directories are never pushed: each sync ships a checked, consistent dump instead."
MY="mariadb --no-defaults -S $M/run/mysqld/mysqld.sock -uroot --password=$(cat "$M/etc/hotsync-demo/mysql.pw")"
$MY -e "CREATE DATABASE shop; CREATE TABLE shop.orders (id INT PRIMARY KEY, item VARCHAR(40));
        INSERT INTO shop.orders VALUES (1, 'coffee'), (2, 'tea'), (3, 'cake')"
PGENV="PGHOST=$M/run/postgresql PGUSER=postgres PGPASSWORD=$(cat "$M/etc/hotsync-demo/pg.pw")"
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
env $PGENV "$PGBIN/psql" -X -q -d postgres -c "CREATE DATABASE webtop5"
env $PGENV "$PGBIN/psql" -X -q -d webtop5 -c "CREATE TABLE notes (id int, body text);
  INSERT INTO notes VALUES (1, 'call the bank'), (2, 'buy milk')"
note "master: MariaDB shop.orders has 3 rows; PostgreSQL webtop5.notes has 2 rows"

say "A push takes the dumps (checked, then renamed over the last good ones) and ships them"
run master hotsync sync
note "slave# ls /var/lib/hotsync/dumps  ->  $(ls "$S/var/lib/hotsync/dumps" | tr '\n' ' ')"

say "On the slave (at promote, or by hand): load the dumps, check every table's row count"
run slave hotsync restore-databases
SMY="mariadb --no-defaults -S $S/run/mysqld/mysqld.sock -uroot --password=$(cat "$S/etc/hotsync-demo/mysql.pw")"
note "slave MariaDB:   $($SMY -N -B -e 'SELECT GROUP_CONCAT(item ORDER BY id) FROM shop.orders')"
note "slave PostgreSQL: $(env PGHOST="$S/run/postgresql" PGUSER=postgres PGPASSWORD="$(cat "$S/etc/hotsync-demo/pg.pw")" \
  "$PGBIN/psql" -X -A -t -d webtop5 -c "SELECT string_agg(body, ', ' ORDER BY id) FROM notes")"
