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

IMAGE=/run/pycontainerd/busybox.tar
[[ -f $IMAGE ]] || .venv/bin/python -m pycontainerd.tools.busybox "$IMAGE" >/dev/null

set -x
ctr -a "$SOCK" version
ctr -a "$SOCK" plugins ls
ctr -a "$SOCK" images import "$IMAGE"
ctr -a "$SOCK" run --rm docker.io/library/busybox:latest demo-py-shim \
  echo "hello from a container (io.containerd.runc.v2 = containerd-shim-pyrunc-v2, the default)"
ctr -a "$SOCK" run --rm --runtime /usr/bin/containerd-shim-runc-v2 docker.io/library/busybox:latest demo-go-shim \
  echo "hello from a container (Debian's Go shim)"
{ set +x; } 2>/dev/null
echo "==> pycontainerd is running (pid $(cat "$PIDFILE" 2>/dev/null || echo '?')) on $SOCK"
