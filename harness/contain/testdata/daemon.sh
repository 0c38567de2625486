#!/bin/sh
# A sender that daemonises the ways real ones do, and records every pid in
# $MARK (see looper.sh):
#   sess     setsid sh -c '... &' &: a new session, then a double fork
#            (its parent exits at once, so the looper is orphaned)
#   setsidf  setsid -f: forks, the child calls setsid, the parent exits
#   dfork    ( ... & ): a double fork that stays in the leader's session
#   plain    a background child in the leader's own process group
# Once all four run it records its own pid (leader.pid), then exits
# ${CODE:-0} if LEADER=exit, or else waits for ever.
here=$(dirname "$0")
setsid sh -c "sh '$here/looper.sh' sess & exit 0" &
setsid -f sh "$here/looper.sh" setsidf
( sh "$here/looper.sh" dfork & )
sh "$here/looper.sh" plain &
for n in sess setsidf dfork plain; do
  while [ ! -e "$MARK/$n.pid" ]; do sleep 0.01; done
done
echo $$ > "$MARK/leader.tmp" && mv "$MARK/leader.tmp" "$MARK/leader.pid"
[ "$LEADER" = exit ] && exit "${CODE:-0}"
exec sleep 1000
