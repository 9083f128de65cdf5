#!/usr/bin/env bash
# Start a throw-away PostgreSQL on 127.0.0.1:${PGPORT:-55432} (trust auth, data in
# ${PGDATA_DIR:-/tmp/radris-pg}) and print its URL. Reuses a running one.
set -euo pipefail
port=${PGPORT:-55432}
dir=${PGDATA_DIR:-/tmp/radris-pg}
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
as_pg() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/bash -c "$*"; else bash -c "$*"; fi; }
if ! as_pg "$bin/pg_isready -q -h 127.0.0.1 -p $port" 2>/dev/null; then
  if [ ! -f "$dir/PG_VERSION" ]; then
    mkdir -p "$dir"; [ "$(id -u)" = 0 ] && chown postgres "$dir"
    as_pg "$bin/initdb -D $dir -U postgres --auth=trust" >/dev/null
  fi
  as_pg "$bin/pg_ctl -D $dir -o '-p $port -k /tmp -c listen_addresses=127.0.0.1 -c fsync=on' -l $dir/log -w start" >/dev/null
fi
echo "postgres://postgres@127.0.0.1:$port/postgres"
