#!/usr/bin/env bash
# The main job: install, start pycontainerd with its defaults, and show it answering the real ctr.
# The daemon keeps running in the background; stop it with: kill $(cat /run/pycontainerd/pycontainerd.pid)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh

SOCK=/run/pycontainerd/pycontainerd.sock
PIDFILE=/run/pycontainerd/pycontainerd.pid
LOG=/run/pycontainerd/pycontainerd.log
mkdir -p /run/pycontainerd

if [[ -S $SOCK ]] && ctr -a "$SOCK" version >/dev/null 2>&1; then
  echo "==> pycontainerd already running on $SOCK"
else
  echo "==> starting pycontainerd (log: $LOG)"
  setsid .venv/bin/pycontainerd >>"$LOG" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
  for _ in $(seq 1 200); do
    ctr -a "$SOCK" version >/dev/null 2>&1 && break
    sleep 0.05
  done
fi

set -x
ctr -a "$SOCK" version
ctr -a "$SOCK" plugins ls
ctr -a "$SOCK" namespaces create demo purpose=readme 2>/dev/null || true
ctr -a "$SOCK" namespaces ls
{ set +x; } 2>/dev/null
echo "==> pycontainerd is running (pid $(cat "$PIDFILE" 2>/dev/null || echo '?')) on $SOCK"
