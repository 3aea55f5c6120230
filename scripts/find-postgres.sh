#!/usr/bin/env bash
# Prints a PostgreSQL URL the tests can use, starting a throwaway cluster if none is running.
#   1. $CHATACTORS_TEST_DATABASE_URL if set;
#   2. a server with trust auth on 127.0.0.1:5432 (database "test", else "postgres");
#   3. a new cluster (initdb into a temp dir, as the postgres user when run as root) on a free port.
# Exits non-zero, printing nothing on stdout, when none of these works.
set -u
if [ -n "${CHATACTORS_TEST_DATABASE_URL:-}" ]; then echo "$CHATACTORS_TEST_DATABASE_URL"; exit 0; fi

try() { psql "$1" -Atqc 'select 1' >/dev/null 2>&1; }
if command -v psql >/dev/null 2>&1; then
  for db in test postgres; do
    for user in "${PGUSER:-}" postgres "$(id -un)"; do
      [ -n "$user" ] || continue
      url="postgresql://$user@127.0.0.1:5432/$db"
      if try "$url"; then echo "$url"; exit 0; fi
    done
  done
fi

bindir=""
for d in "$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent)")" /usr/lib/postgresql/*/bin; do
  if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then bindir="$d"; fi
done
if [ -z "$bindir" ]; then echo "find-postgres: no running server and no initdb/pg_ctl found" >&2; exit 1; fi

dir="${CHATACTORS_PG_DIR:-/tmp/chatactors-pg}"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
as_pg() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$*"; else sh -c "$*"; fi; }
if [ -f "$dir/port" ] && try "postgresql://postgres@127.0.0.1:$(cat "$dir/port")/postgres"; then
  echo "postgresql://postgres@127.0.0.1:$(cat "$dir/port")/postgres"; exit 0
fi
rm -rf "$dir"; mkdir -p "$dir"
[ "$(id -u)" = 0 ] && chown postgres "$dir"
as_pg "$bindir/initdb -D $dir/data -U postgres -A trust >$dir/initdb.log 2>&1" || { cat "$dir/initdb.log" >&2; exit 1; }
as_pg "$bindir/pg_ctl -D $dir/data -l $dir/server.log -o '-p $port -k $dir -h 127.0.0.1' -w start >/dev/null" \
  || { cat "$dir/server.log" >&2; exit 1; }
echo "$port" > "$dir/port"
echo "find-postgres: started a throwaway cluster in $dir on port $port (stop: pg_ctl -D $dir/data stop)" >&2
echo "postgresql://postgres@127.0.0.1:$port/postgres"
