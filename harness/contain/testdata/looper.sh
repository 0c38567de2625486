#!/bin/sh
# looper.sh NAME: records its pid in $MARK/NAME.pid (renamed into place, so
# a reader never sees half a number), says so on the stdout it inherited and
# keeps open, then appends a line to $MARK/NAME.log every 20ms until killed.
echo $$ > "$MARK/$1.tmp" && mv "$MARK/$1.tmp" "$MARK/$1.pid"
echo "looper $1 running"
while :; do
  echo x >> "$MARK/$1.log"
  sleep 0.02
done
