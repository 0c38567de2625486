#!/bin/sh
# Runs "$@" the way daemons start: in a new session (setsid), double-forked
# so that its parent is gone, its output cut from ours. This script waits
# for it to finish (it writes its exit status to a file) and exits with it,
# as a job runner's wrapper around `postfix start` or `celery --detach`
# would. The daemon's pid goes to $MARK_DIR/daemon.pid when MARK_DIR is set.
set -u
dir=$(mktemp -d)
( setsid sh -c '"$@" </dev/null >"$0/out" 2>&1; echo $? >"$0/rc.tmp"; mv "$0/rc.tmp" "$0/rc"' "$dir" "$@" &
  if [ -n "${MARK_DIR:-}" ]; then echo $! >"$MARK_DIR/daemon.tmp" && mv "$MARK_DIR/daemon.tmp" "$MARK_DIR/daemon.pid"; fi ) &
wait
while [ ! -f "$dir/rc" ]; do sleep 0.02; done
cat "$dir/out" >&2
rc=$(cat "$dir/rc")
rm -rf "$dir"
exit "$rc"
