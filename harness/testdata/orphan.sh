#!/bin/sh
# A sender that never finishes and leaves a grandchild behind in its process
# group. It writes both pids to $MARK_DIR (renamed into place, so a reader
# never sees half a number); the specs check neither outlives the run.
sleep 300 &
echo $! > "$MARK_DIR/grandchild.tmp" && mv "$MARK_DIR/grandchild.tmp" "$MARK_DIR/grandchild.pid"
echo $$ > "$MARK_DIR/child.tmp" && mv "$MARK_DIR/child.tmp" "$MARK_DIR/child.pid"
exec sleep 300
