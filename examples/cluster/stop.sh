#!/usr/bin/env bash
# Stop what start.sh started: nginx first (no new requests), then the nodes,
# each with SIGTERM (they answer their parked polls and finish requests in
# flight), SIGKILL after 15 s. Only processes whose pid files are in the run
# directory and whose command line is nginx or livesupport are signalled.
set -uo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
RUN="${LIVESUPPORT_RUN_DIR:-$HERE/run}"

stop() {  # stop NAME
    local pidfile="$RUN/$1.pid" pid
    [ -e "$pidfile" ] || return 0
    pid="$(cat "$pidfile")"
    local command
    command="$(ps -o args= -p "$pid" 2>/dev/null || true)"
    if [[ "$command" == *nginx* || "$command" == *livesupport* ]]; then
        kill -TERM "$pid"
        for _ in $(seq 150); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "stop: $1 ($pid) still running after 15 s; killing it" >&2
            kill -KILL "$pid"
        fi
        echo "stopped $1 ($pid)"
    fi
    rm -f "$pidfile"
}

stop nginx
for name in web-1 web-2 desk-1; do
    stop "$name"
done
