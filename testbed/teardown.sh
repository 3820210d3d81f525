#!/usr/bin/env bash
# Stop the testbed sshd started by testbed/setup.sh. dockerd, the images and
# the generated keys/secrets in .testbed/ are left alone.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SSHD_PID="$ROOT/.testbed/sshd.pid"
SSHD_CONFIG="$ROOT/.testbed/ssh/sshd_config"

pid="$(cat "$SSHD_PID" 2>/dev/null || true)"
if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null &&
        tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$SSHD_CONFIG"; then
    kill "$pid"
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    echo "testbed: sshd (pid $pid) stopped"
else
    echo "testbed: sshd not running"
fi
rm -f "$SSHD_PID"
