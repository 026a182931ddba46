#!/usr/bin/env bash
# Start the example cluster on this machine:
#
#   nginx        127.0.0.1:8100  balances the visitor nodes on the ls_node cookie
#   web-1, web-2 127.0.0.1:8101, :8102  --role visitor (widget, visitor routes)
#   desk-1       127.0.0.1:8190  --role agent (console, agent routes), not behind nginx
#
# sharing a PostgreSQL store and a Redis bus. Pids and logs go to ./run (or
# $LIVESUPPORT_RUN_DIR); ./stop.sh stops everything started here. nginx runs
# with its own prefix, pid file and ports: a system nginx is left alone.
#
# Settings (environment): LIVESUPPORT_STORE, LIVESUPPORT_BUS (redis://... or
# postgresql://...), LB_PORT, WEB1_PORT, WEB2_PORT, DESK_PORT, AGENT_EMAIL,
# AGENT_PASSWORD, NGINX (the binary), LIVESUPPORT (the command).
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
RUN="${LIVESUPPORT_RUN_DIR:-$HERE/run}"
STORE="${LIVESUPPORT_STORE:-postgresql://postgres@127.0.0.1:5432/test}"
BUS="${LIVESUPPORT_BUS:-redis://127.0.0.1:6379/0}"
LB_PORT="${LB_PORT:-8100}" WEB1_PORT="${WEB1_PORT:-8101}" WEB2_PORT="${WEB2_PORT:-8102}"
DESK_PORT="${DESK_PORT:-8190}"
AGENT_EMAIL="${AGENT_EMAIL:-agent@example.com}"
AGENT_PASSWORD="${AGENT_PASSWORD:-cluster demo password}"
LIVESUPPORT="${LIVESUPPORT:-$ROOT/.venv/bin/livesupport}"
[ -x "$LIVESUPPORT" ] || LIVESUPPORT="$(command -v livesupport)" \
    || { echo "start: no livesupport command (run make demo once, or pip install livesupport)" >&2; exit 1; }
PYTHON="$(dirname "$LIVESUPPORT")/python"
[ -x "$PYTHON" ] || PYTHON="$(command -v python3)"
NGINX="${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}"
[ -x "$NGINX" ] || { echo "start: nginx not found (apt-get install nginx)" >&2; exit 1; }

mkdir -p "$RUN/nginx-tmp"
for pidfile in "$RUN"/*.pid; do
    if [ -e "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        echo "start: already running ($pidfile); run $HERE/stop.sh first" >&2
        exit 1
    fi
done

# One secret for every node: cookies and cursors signed by one are valid on all.
if [ ! -s "$RUN/secret" ]; then
    (umask 077; "$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(48))' > "$RUN/secret")
fi
export LIVESUPPORT_SECRET_KEY="$(cat "$RUN/secret")"

"$LIVESUPPORT" db upgrade --store "$STORE"
if ! "$LIVESUPPORT" agents list --store "$STORE" | grep -q -- "$AGENT_EMAIL"; then
    printf '%s\n' "$AGENT_PASSWORD" | "$LIVESUPPORT" agents add --store "$STORE" \
        --email "$AGENT_EMAIL" --name "Demo Agent" --password-stdin
fi

cd "$ROOT"  # the nodes import examples.host_app from here
node() {  # node ID PORT ROLE
    # Visitor nodes sit behind nginx, which names the client in X-Forwarded-For.
    proxies=0; [ "$3" = visitor ] && proxies=1
    LIVESUPPORT_TRUSTED_PROXIES=$proxies PYTHONPATH="$ROOT" nohup "$LIVESUPPORT" serve --host 127.0.0.1 --port "$2" \
        --store "$STORE" --bus "$BUS" --node-id "$1" --role "$3" examples.host_app:app \
        > "$RUN/$1.log" 2>&1 &
    echo $! > "$RUN/$1.pid"
}
node web-1 "$WEB1_PORT" visitor
node web-2 "$WEB2_PORT" visitor
node desk-1 "$DESK_PORT" agent

"$PYTHON" "$HERE/nginx_conf.py" "$RUN" "$LB_PORT" "web-1=$WEB1_PORT" "web-2=$WEB2_PORT" \
    > "$RUN/nginx.conf"
"$NGINX" -t -q -p "$RUN" -c "$RUN/nginx.conf" -e "$RUN/nginx-error.log"
nohup "$NGINX" -p "$RUN" -c "$RUN/nginx.conf" -e "$RUN/nginx-error.log" \
    > "$RUN/nginx.out" 2>&1 &   # writes $RUN/nginx.pid itself

ready() {  # ready URL: wait up to 30 s for a 200
    "$PYTHON" - "$1" <<'PY'
import sys, time, urllib.request
deadline = time.monotonic() + 30
while True:
    try:
        with urllib.request.urlopen(sys.argv[1], timeout=2) as answer:
            if answer.status == 200:
                break
    except OSError:
        pass
    if time.monotonic() > deadline:
        sys.exit(f"start: {sys.argv[1]} did not answer 200 within 30 s (see the logs in run/)")
    time.sleep(0.2)
PY
}
for port in "$WEB1_PORT" "$WEB2_PORT" "$DESK_PORT" "$LB_PORT"; do
    ready "http://127.0.0.1:$port/livesupport/healthz"
done

cat <<EOF2
The cluster is up (logs and pids in $RUN):
  shop, through nginx:   http://127.0.0.1:$LB_PORT/
  agent console:         http://127.0.0.1:$DESK_PORT/livesupport/agent/
                         $AGENT_EMAIL / $AGENT_PASSWORD
  nodes' health:         http://127.0.0.1:{$WEB1_PORT,$WEB2_PORT,$DESK_PORT}/livesupport/healthz
Stop it with $HERE/stop.sh
EOF2
