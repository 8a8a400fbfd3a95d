#!/usr/bin/env bash
# Fail when a server that the tests started is still running: anything executed from the tools
# folder, or a process whose command line points into pytest's temporary folders.
set -uo pipefail
tools=$(realpath -m "${TOOLS:-.tools}")
strays=$(pgrep -af -- "$tools/|/pytest-of-" | grep -v -e "pgrep" -e "no-strays" || true)
if [ -n "$strays" ]; then
  echo "no-strays: server processes outlived the test run:" >&2
  echo "$strays" >&2
  exit 1
fi
echo "no-strays: no server process left behind"
