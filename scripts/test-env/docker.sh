#!/usr/bin/env bash
# Provides a Docker engine for the container tests (tests/containers) and the image scripts.
#
#   scripts/test-env/docker.sh start   # install docker.io + debootstrap if needed, start dockerd, wait
#   scripts/test-env/docker.sh status  # exit 0 when `docker info` answers
#   scripts/test-env/docker.sh stop    # stops the dockerd this script started (no-op otherwise)
#
# Nothing is ever pulled: images are built locally (scripts/image/base.sh). Idempotent: a running
# engine is left as it is. Progress goes to stderr; stdout stays empty.
# State: /tmp/gantry-docker-<uid>/{dockerd.pid,dockerd.log}.
set -euo pipefail

STATE="/tmp/gantry-docker-$(id -u)"
PIDFILE="$STATE/dockerd.pid"
LOG="$STATE/dockerd.log"
# Bounded wait for the engine to answer after it is started.
readonly START_TIMEOUT_S="${GANTRY_DOCKER_START_TIMEOUT_S:-60}"

log() { printf 'docker.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

engine_up() { docker info >/dev/null 2>&1; }

apt_install() {
  [ "$(id -u)" -eq 0 ] || die "$* missing and not root: install them (apt-get install $*)"
  command -v apt-get >/dev/null || die "$* missing and apt-get is not available: install them"
  log "installing $* with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  local opts=(-y -q --no-install-recommends -o Dpkg::Use-Pty=0)
  if ! apt-get install "${opts[@]}" "$@" >&2; then
    log "apt-get install failed; running apt-get update and retrying"
    apt-get update -q >&2
    apt-get install "${opts[@]}" "$@" >&2
  fi
}

ensure_packages() {
  local want=()
  # A docker CLI may exist without an engine; the engine is what we need.
  command -v dockerd >/dev/null || want+=(docker.io)
  command -v debootstrap >/dev/null || want+=(debootstrap)
  [ "${#want[@]}" -eq 0 ] || apt_install "${want[@]}"
  command -v dockerd >/dev/null || die "dockerd still missing after installing docker.io"
}

start() {
  if engine_up; then
    log "engine already running"
    return 0
  fi
  ensure_packages
  mkdir -p "$STATE"
  if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    log "dockerd (pid $(cat "$PIDFILE")) is starting"
  else
    log "starting dockerd (log: $LOG)"
    # setsid: the engine outlives this script and the test run that started it.
    setsid dockerd >"$LOG" 2>&1 </dev/null &
    echo $! >"$PIDFILE"
  fi
  local waited=0
  until engine_up; do
    if ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
      tail -n 20 "$LOG" >&2 || true
      die "dockerd exited; see $LOG"
    fi
    [ "$waited" -lt "$START_TIMEOUT_S" ] || die "docker info did not answer within ${START_TIMEOUT_S}s; see $LOG"
    sleep 1
    waited=$((waited + 1))
  done
  log "engine ready after ${waited}s"
}

stop() {
  [ -f "$PIDFILE" ] || return 0
  local pid
  pid="$(cat "$PIDFILE")"
  if kill -0 "$pid" 2>/dev/null; then
    log "stopping dockerd (pid $pid)"
    kill "$pid"
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
  fi
  rm -f "$PIDFILE"
}

case "${1:-}" in
  start) start ;;
  status) engine_up ;;
  stop) stop ;;
  *) echo "usage: $0 start|status|stop" >&2; exit 2 ;;
esac
