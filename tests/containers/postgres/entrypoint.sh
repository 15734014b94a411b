#!/bin/sh
# Starts PostgreSQL on $PGDATA, creating the cluster first when $PGDATA is empty (a fresh volume).
# POSTGRES_PASSWORD_FILE set: the superuser `gantry` gets that password and every network connection
# must present it (scram-sha-256); unset: connections are trusted (throw-away test containers).
# Arguments are passed to postgres (-c settings); `--init-only` creates the cluster and exits.
set -eu
bin=/usr/lib/postgresql/15/bin
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
    "$bin/initdb" -D "$PGDATA" -U gantry --auth-local=trust --auth-host=scram-sha-256 --pwfile="$POSTGRES_PASSWORD_FILE" \
      --encoding=UTF8 --locale=C.UTF-8 >/dev/null
    echo "host all all 0.0.0.0/0 scram-sha-256" >>"$PGDATA/pg_hba.conf"
  else
    "$bin/initdb" -D "$PGDATA" -U gantry --auth=trust --encoding=UTF8 --locale=C.UTF-8 >/dev/null
    echo "host all all 0.0.0.0/0 trust" >>"$PGDATA/pg_hba.conf"
  fi
  echo "entrypoint: created a database cluster in $PGDATA" >&2
fi
[ "${1:-}" != --init-only ] || exit 0
exec "$bin/postgres" -D "$PGDATA" -c listen_addresses='*' -c unix_socket_directories=/tmp -c max_connections=200 "$@"
