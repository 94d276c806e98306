#!/usr/bin/env bash
# The whole job, end to end: a seeded hero_proc simulator, the service in front
# of it, a dry run and a real cleanup through the CLI and curl, then both shut
# down with nothing left behind. Run by `make demo`.
set -euo pipefail

BIN=${BIN:-.venv/bin}
HC="$BIN/hero_codescalers"
own_dir=
if [ -z "${HERO_SOCKET_DIR:-}" ]; then
    own_dir=$(mktemp -d /tmp/hero-demo.XXXXXX)
    HERO_SOCKET_DIR=$own_dir
fi
export HERO_SOCKET_DIR
export HERO_CODESCALERS_LOG_FORMAT=json
SERVICE_SOCK=$HERO_SOCKET_DIR/hero_codescalers/rpc.sock
HERO_PROC_SOCK=$HERO_SOCKET_DIR/hero_proc/rpc.sock
LOGS=$HERO_SOCKET_DIR/logs
mkdir -p "$LOGS"
pids=()

if [ -t 1 ]; then bold=$'\033[1m' plain=$'\033[0m'; else bold='' plain=''; fi
step() { printf '\n%s== %s%s\n' "$bold" "$*" "$plain"; }
show() { printf '$'; printf ' %q' "$@"; printf '\n'; "$@"; }

shutdown() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap shutdown EXIT

wait_for_socket() {  # a demo may poll; the tests wait on log lines instead
    for _ in $(seq 100); do
        [ -S "$1" ] && return 0
        sleep 0.1
    done
    echo "no socket at $1 after 10 s; logs in $LOGS" >&2
    exit 1
}

step "Start a hero_proc simulator seeded with 300 jobs (codescaler, unrelated, look-alike tags)"
echo "\$ $HC simulator --seed 300 &"
"$HC" simulator --seed 300 2>"$LOGS/simulator.log" &
pids+=($!)
wait_for_socket "$HERO_PROC_SOCK"

step "Start the service (HERO_SOCKET_DIR=$HERO_SOCKET_DIR)"
echo "\$ $HC serve &"
"$HC" serve 2>"$LOGS/service.log" &
pids+=($!)
wait_for_socket "$SERVICE_SOCK"

step "What hero_proc holds"
show "$HC" stats

step "Dry run: alice's jobs older than a week (nothing changes)"
show "$HC" jobs-cleanup --actor alice --older-than 7d --dry-run

step "Real cleanup through the CLI: every job of kind 'user'"
show "$HC" jobs-cleanup --kind user

step "Real cleanup through curl on the socket: everything codescaler"
show curl -sS --unix-socket "$SERVICE_SOCK" http://localhost/rpc \
    -H 'Content-Type: application/json' \
    -d '{"jsonrpc":"2.0","id":1,"method":"jobs.cleanup","params":{}}'
echo

step "Afterwards: codescaler counts at 0, unrelated and look-alike jobs untouched"
show "$HC" stats

step "Shut down"
shutdown
trap - EXIT
pids=()
left=$(find "$HERO_SOCKET_DIR" -type s | wc -l)
procs=$(pgrep -f "hero_codescalers (serve|simulator)" -c -u "$(id -u)" || true)
echo "sockets left: $left; processes left: $procs"

step "The service logged one line per cleanup run (JSON, with the caller's uid and pid)"
grep '"cleanup_finished"' "$LOGS/service.log"
[ -n "$own_dir" ] && rm -rf "$own_dir"
[ "$left" -eq 0 ] && [ "$procs" -eq 0 ]
