#!/usr/bin/env bash
# The whole job, end to end: a seeded hero_proc simulator, the service in front
# of it, a dry run, a preview applied exactly and a real cleanup through the CLI,
# a retention policy firing every two seconds, a full cleanup through curl, the
# history and the tombstones of the deleted jobs read back after a restart, then
# both shut down with nothing left behind. Run by `make demo`, as root or any
# other user: the service makes the demo's own uid an admin (--admin-uid).
set -euo pipefail

BIN=${BIN:-.venv/bin}
HC="$BIN/hero_codescalers"
own_dir=
if [ -z "${HERO_SOCKET_DIR:-}" ]; then
    own_dir=$(mktemp -d "${TMPDIR:-/tmp}/hero-demo.XXXXXX")
    HERO_SOCKET_DIR=$own_dir
fi
export HERO_SOCKET_DIR
# The service's state database: in a directory of the demo's own (never under $HOME).
own_state=
if [ -z "${HERO_CODESCALERS_STATE_DIR:-}" ]; then
    own_state=$(mktemp -d "${TMPDIR:-/tmp}/hero-demo-state.XXXXXX")
    HERO_CODESCALERS_STATE_DIR=$own_state
fi
export HERO_CODESCALERS_STATE_DIR
export HERO_CODESCALERS_LOG_FORMAT=json
SERVICE_SOCK=$HERO_SOCKET_DIR/hero_codescalers/rpc.sock
HERO_PROC_SOCK=$HERO_SOCKET_DIR/hero_proc/rpc.sock
LOGS=$(mktemp -d "${TMPDIR:-/tmp}/hero-demo-logs.XXXXXX")
pids=()

if [ -t 1 ]; then bold=$'\033[1m' plain=$'\033[0m'; else bold='' plain=''; fi
step() { printf '\n%s== %s%s\n' "$bold" "$*" "$plain"; }
show() { printf '$'; printf ' %q' "$@"; printf '\n'; "$@"; }

shutdown() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    pids=()
}

# On any exit (a failed step included): stop what the demo started, show why it
# failed, and remove its directories.
finish() {
    local status=$?
    shutdown
    if [ "$status" -ne 0 ]; then
        echo "demo failed (exit $status); the last log lines:" >&2
        tail -n 5 "$LOGS"/*.log >&2 2>/dev/null || true
    fi
    rm -rf "$LOGS"
    if [ -n "$own_dir" ]; then rm -rf "$own_dir"; fi
    if [ -n "$own_state" ]; then rm -rf "$own_state"; fi
    exit "$status"
}
trap finish EXIT

wait_for_socket() {  # $1 the socket, $2 the pid that should create it
    for _ in $(seq 100); do
        [ -S "$1" ] && return 0
        kill -0 "$2" 2>/dev/null || { echo "process $2 ended before creating $1" >&2; return 1; }
        sleep 0.1
    done
    echo "no socket at $1 after 10 s" >&2
    return 1
}

step "Start a hero_proc simulator seeded with 300 jobs (codescaler, unrelated, look-alike tags)"
echo "\$ $HC simulator --seed 300 &"
"$HC" simulator --seed 300 2>"$LOGS/simulator.log" &
pids+=($!)
wait_for_socket "$HERO_PROC_SOCK" "${pids[-1]}"

# The demo's retention policy: the finished service jobs, every two seconds.
POLICIES=$LOGS/policies.toml
write_policy() {  # $1: enabled, true or false
    cat >"$POLICIES" <<EOF
[policies.finished-services]
kind = "service"   # statuses: the terminal ones (pending and running jobs stay)
every = "2s"
enabled = $1
EOF
}
write_policy false

start_service() {
    echo "\$ $HC serve --admin-uid $(id -u) --policies $POLICIES &"
    "$HC" serve --admin-uid "$(id -u)" --policies "$POLICIES" 2>>"$LOGS/service.log" &
    pids+=($!)
    wait_for_socket "$SERVICE_SOCK" "${pids[-1]}"
}

step "Start the service, with this user (uid $(id -u)) as an admin (HERO_SOCKET_DIR=$HERO_SOCKET_DIR, state in HERO_CODESCALERS_STATE_DIR=$HERO_CODESCALERS_STATE_DIR)"
start_service

step "What hero_proc holds"
show "$HC" stats

step "Dry run: alice's jobs older than a week (nothing changes)"
show "$HC" jobs-cleanup --actor alice --older-than 7d --dry-run

step "Preview, then apply exactly that: bob's template jobs (the preview answers a plan_id)"
printf '$ %q jobs-cleanup --actor bob --kind template --dry-run\n' "$HC"
preview=$("$HC" jobs-cleanup --actor bob --kind template --dry-run)
echo "$preview"
plan=$(printf '%s' "$preview" | "$BIN/python" -c 'import json, sys; print(json.load(sys.stdin)["plan_id"])')
echo "# meanwhile bob submits another template job: it matches the filters, not the plan"
show "$HC" jobs-submit --kind template --actor bob --script "render --template invoice"
show "$HC" jobs-cleanup --plan "$plan" --reason "demo: bob's preview, approved"
echo "# left of bob's template jobs: only the one submitted after the preview"
show "$HC" jobs-list --actor bob --kind template

step "Real cleanup through the CLI: every job of kind 'user', with the reason the history keeps"
printf '$ %q jobs-cleanup --kind user --reason %q\n' "$HC" "demo: retire the user jobs"
cleaned=$("$HC" jobs-cleanup --kind user --reason "demo: retire the user jobs")
echo "$cleaned"
gone=$(printf '%s' "$cleaned" | "$BIN/python" -c 'import json, sys; print(json.load(sys.stdin)["job_ids"][0])')

policy_runs() {  # the recorded runs of the demo's policy
    "$HC" cleanup-history --policy finished-services --limit 100 | grep -c '"run_id"' || true
}
reload_service() {
    echo "\$ kill -HUP ${pids[-1]}   # systemctl reload: read the policies file again"
    kill -HUP "${pids[-1]}"
}

step "A retention policy, disabled in the policies file"
cat "$POLICIES"
show "$HC" policies

step "Enable it and reload (SIGHUP): it runs at once, then every 2 seconds"
write_policy true
reload_service
for _ in $(seq 150); do
    [ "$(policy_runs)" -ge 2 ] && break
    sleep 0.1
done
[ "$(policy_runs)" -ge 2 ] || { echo "the policy did not run twice within 15 s" >&2; exit 1; }
echo "Its runs so far (the service's log, one line each; also in cleanup-history --policy finished-services):"
grep '"cleanup_finished"' "$LOGS/service.log" | grep '"policy":"finished-services"' |
    sed -E 's/.*"jobs_deleted":([0-9]+).*"outcome":"([a-z]+)".*"timestamp":"([^"]+)".*/  \3  jobs_deleted=\1  outcome=\2/'
echo "No finished service job is left (pending and running ones stay):"
show "$HC" jobs-list --kind service --status succeeded --status failed --status cancelled

step "Disable it again (and reload), so that it leaves the next cleanup alone"
write_policy false
reload_service
for _ in $(seq 100); do
    "$HC" policies | grep -q '"running": false' && break
    sleep 0.1
done
show "$HC" policies

step "Real cleanup through curl on the socket: everything codescaler"
show curl -sS --fail --unix-socket "$SERVICE_SOCK" http://localhost/rpc \
    -H 'Content-Type: application/json' \
    -d '{"jsonrpc":"2.0","id":1,"method":"jobs.cleanup","params":{}}'
echo

step "Afterwards: codescaler counts at 0, unrelated and look-alike jobs untouched"
show "$HC" stats

step "Restart the service: the history of the runs survives (it is in \$HERO_CODESCALERS_STATE_DIR/state.db)"
service_pid=${pids[-1]}
kill -TERM "$service_pid"
wait "$service_pid" || true
unset 'pids[-1]'
start_service
show "$HC" cleanup-history --limit 3
show "$HC" cleanup-history --dry-run

step "What happened to job $gone? Each job a real run deleted left a tombstone (kept as long as its run)"
show "$HC" jobs-deleted --id "$gone"
show "$HC" jobs-deleted --actor bob --limit 2

step "Shut down"
started=("${pids[@]}")
shutdown
left=0
for sock in "$SERVICE_SOCK" "$HERO_PROC_SOCK"; do
    if [ -e "$sock" ]; then left=$((left + 1)); fi
done
running=0
for pid in "${started[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then running=$((running + 1)); fi
done
echo "sockets left: $left; processes left: $running (of pids ${started[*]})"

step "The service logged one line per cleanup run (JSON, with the caller's uid and pid)"
grep '"cleanup_finished"' "$LOGS/service.log"
[ "$left" -eq 0 ] && [ "$running" -eq 0 ]
