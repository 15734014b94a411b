#!/usr/bin/env bash
# Provides a real PostgreSQL 15 server for tests: our own throw-away cluster,
# never the distro's service/cluster.
#
#   scripts/test-env/postgres.sh start   # install if needed, init if needed, start; prints the URL
#   scripts/test-env/postgres.sh url     # prints the URL
#   scripts/test-env/postgres.sh stop    # stops the server (no-op if not running)
#
# Env: GANTRY_TEST_PG_PORT (default 55432), GANTRY_TEST_PG_DIR (default /tmp/gantry-pg-<uid>): a
# second checkout gives both to run its own server beside the first.
# State: /tmp/gantry-pg-<uid>/{data,run,postgres.log}. Only the URL goes to stdout.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
readonly ROOT
cd "$ROOT"

PG_MAJOR=15
PORT="${GANTRY_TEST_PG_PORT:-55432}"
BASE="${GANTRY_TEST_PG_DIR:-/tmp/gantry-pg-$(id -u)}"
DATA="$BASE/data"
SOCK="$BASE/run"
LOG="$BASE/postgres.log"
BIN="/usr/lib/postgresql/$PG_MAJOR/bin"
URL="postgres://gantry:gantry@127.0.0.1:$PORT/gantry"

log() { printf 'postgres.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

is_root() { [ "$(id -u)" -eq 0 ]; }

# Runs a command as the OS user that owns the cluster (postgres refuses root).
# fd 9 (our lock) is closed so a started postmaster does not inherit and hold it.
as_pg() {
  if is_root; then
    (cd "$BASE" && runuser -u postgres -- "$@" 9>&-)
  else
    (cd "$BASE" && "$@" 9>&-)
  fi
}

ensure_binaries() {
  if [ -x "$BIN/initdb" ] && [ -x "$BIN/postgres" ] && [ -x "$BIN/pg_ctl" ] && [ -x "$BIN/pg_isready" ]; then
    return 0
  fi
  is_root || die "PostgreSQL $PG_MAJOR not found in $BIN and not root: install postgresql-$PG_MAJOR"
  command -v apt-get >/dev/null || die "PostgreSQL $PG_MAJOR not found in $BIN and apt-get is missing"
  log "installing postgresql-$PG_MAJOR with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  local apt_opts=(-y -q --no-install-recommends -o Dpkg::Use-Pty=0)
  if ! apt-get install "${apt_opts[@]}" "postgresql-$PG_MAJOR" >&2; then
    log "apt-get install failed; running apt-get update and retrying"
    apt-get update -q >&2
    apt-get install "${apt_opts[@]}" "postgresql-$PG_MAJOR" >&2
  fi
  [ -x "$BIN/initdb" ] || die "postgresql-$PG_MAJOR installed but $BIN/initdb is missing"
}

ensure_base_dir() {
  mkdir -p "$BASE"
  if is_root; then
    if ! id -u postgres >/dev/null 2>&1; then
      # The Debian package creates this user; only reached with unusual installs.
      log "creating system user postgres"
      useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/bash postgres
    fi
    chown postgres:postgres "$BASE"
  fi
  chmod 0755 "$BASE"
  mkdir -p "$SOCK"
  is_root && chown postgres:postgres "$SOCK"
  return 0
}

ensure_cluster() {
  [ -f "$DATA/PG_VERSION" ] && return 0
  local major
  log "initialising cluster in $DATA"
  local tmp="$BASE/data.init"
  rm -rf "$tmp" "$DATA"
  local pwfile="$BASE/pwfile"
  printf 'gantry\n' >"$pwfile"
  chmod 0600 "$pwfile"
  is_root && chown postgres:postgres "$pwfile"

  local locale_opt=(--no-locale)
  if locale -a 2>/dev/null | grep -qix 'c.utf-\?8'; then locale_opt=(--locale=C.UTF-8); fi

  as_pg "$BIN/initdb" -D "$tmp" -U gantry --pwfile="$pwfile" -E UTF8 "${locale_opt[@]}" \
    --auth-local=scram-sha-256 --auth-host=scram-sha-256 >"$BASE/initdb.log" 2>&1 \
    || { rm -f "$pwfile"; cat "$BASE/initdb.log" >&2; die "initdb failed"; }
  rm -f "$pwfile"

  # Port, socket dir and listen address are passed by pg_ctl at start time.
  cat >>"$tmp/postgresql.conf" <<'EOF'

# --- gantry test settings (scripts/test-env/postgres.sh) ---
listen_addresses = '127.0.0.1'
password_encryption = 'scram-sha-256'
max_connections = 200
shared_buffers = 256MB
# Durability stays on: durability tests rely on it.
fsync = on
synchronous_commit = on
full_page_writes = on
# Test-friendly tuning that does not weaken durability.
max_wal_size = 2GB
checkpoint_timeout = 15min
work_mem = 16MB
maintenance_work_mem = 128MB
max_locks_per_transaction = 256
log_min_messages = warning
log_min_error_statement = error
log_connections = off
log_disconnections = off
EOF
  # Passwords everywhere; only loopback TCP and the local socket.
  cat >"$tmp/pg_hba.conf" <<'EOF'
# TYPE  DATABASE  USER  ADDRESS        METHOD
local   all       all                  scram-sha-256
host    all       all   127.0.0.1/32   scram-sha-256
host    all       all   ::1/128        scram-sha-256
EOF

  # Create the gantry database without opening any network port.
  echo "CREATE DATABASE gantry OWNER gantry;" \
    | as_pg "$BIN/postgres" --single -D "$tmp" -c listen_addresses= -c unix_socket_directories= template1 \
      >"$BASE/single.log" 2>&1 \
    || { cat "$BASE/single.log" >&2; die "creating database gantry failed"; }
  grep -q 'ERROR' "$BASE/single.log" && { cat "$BASE/single.log" >&2; die "creating database gantry failed"; }

  mv "$tmp" "$DATA"
  major="$(cat "$DATA/PG_VERSION")"
  log "cluster ready (PostgreSQL $major)"
}

# Prints the port of the postmaster running on our data dir, or nothing.
running_port() {
  [ -f "$DATA/postmaster.pid" ] || return 0
  local pid port
  pid="$(sed -n 1p "$DATA/postmaster.pid" 2>/dev/null || true)"
  port="$(sed -n 4p "$DATA/postmaster.pid" 2>/dev/null || true)"
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    printf '%s\n' "$port"
  fi
}

ready() { "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" -d gantry -t 2 >/dev/null 2>&1; }

cmd_start() {
  ensure_binaries
  ensure_base_dir
  exec 9>"$BASE/lock"
  flock 9

  local cur
  cur="$(running_port)"
  if [ -n "$cur" ] && [ "$cur" = "$PORT" ] && ready; then
    log "already running on 127.0.0.1:$PORT"
    printf '%s\n' "$URL"
    return 0
  fi
  if [ -n "$cur" ] && [ "$cur" != "$PORT" ]; then
    log "running on port $cur, restarting on $PORT"
    as_pg "$BIN/pg_ctl" stop -D "$DATA" -m fast -w -t 30 -s >&2
    cur=""
  fi

  ensure_cluster

  if [ -z "$cur" ]; then
    if "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" -t 1 >/dev/null 2>&1; then
      die "port $PORT is taken by another server; set GANTRY_TEST_PG_PORT"
    fi
    log "starting on 127.0.0.1:$PORT (log: $LOG)"
    touch "$LOG"
    is_root && chown postgres:postgres "$LOG"
    if ! as_pg "$BIN/pg_ctl" start -D "$DATA" -l "$LOG" -w -t 30 -s \
        -o "-p $PORT -k $SOCK -c listen_addresses=127.0.0.1" >&2; then
      tail -n 30 "$LOG" >&2 || true
      die "server did not start"
    fi
  fi

  # Running (or still starting up): wait until it accepts connections, max 30 s.
  local deadline=$((SECONDS + 30))
  until ready; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      tail -n 30 "$LOG" >&2 || true
      die "server not ready after 30 s"
    fi
    sleep 0.2
  done
  log "ready"
  printf '%s\n' "$URL"
}

cmd_stop() {
  [ -d "$BASE" ] || { log "not running"; return 0; }
  exec 9>"$BASE/lock"
  flock 9
  if [ -z "$(running_port)" ]; then
    log "not running"
    return 0
  fi
  log "stopping"
  as_pg "$BIN/pg_ctl" stop -D "$DATA" -m fast -w -t 60 -s >&2
  log "stopped"
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  url) printf '%s\n' "$URL" ;;
  *)
    echo "usage: $0 start|stop|url   (env GANTRY_TEST_PG_PORT, default 55432)" >&2
    exit 2
    ;;
esac
