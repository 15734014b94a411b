# Sourced by the scripts that build test tools with Go (kube-apiserver.sh, skaffold.sh); expects a
# `log` function. Not executable on its own.

# find_go WHAT: sets GO to the go command, or exits 3 saying WHAT needs it.
find_go() {
  GO="$(command -v go || true)"
  if [ -z "$GO" ] && [ -x /usr/local/go/bin/go ]; then GO=/usr/local/go/bin/go; fi
  [ -n "$GO" ] || { log "error: 'go' not found on PATH (nor /usr/local/go/bin/go); install Go >= 1.24 (needed for $1)"; exit 3; }
}

# go_progress WHAT TOTAL START: reads `go build -v` output on stdin and logs a line every 100
# packages compiled (errors and notes pass through), so a cold build of minutes shows progress.
go_progress() {
  local n=0 line
  while IFS= read -r line; do
    case "$line" in
      '#'* | *': '* | go:*) printf '%s\n' "$line" >&2 ;;
      *) n=$((n + 1)); [ $((n % 100)) -ne 0 ] || log "$1: compiled $n of $2 packages ($(( $(date +%s) - $3 )) s)" ;;
    esac
  done
}
