#!/bin/sh
# A real MTA as the sender under test: a throwaway Postfix instance of its
# own (Debian's package), relaying every message to onecopy's fake server.
# `postfix start` daemonises (setsid, double fork): onecopy must contain its
# master, qmgr, pickup, cleanup and smtp processes to kill them.
#
# Each attempt starts the instance over the same queue (in the state dir),
# hands it the recipients not yet handed over (one message each, with a
# Message-ID fixed per recipient), waits until the queue is empty, stops
# Postfix and exits 0. A kill loses nothing queued:
# Postfix retries it on the next start. Postfix is at-least-once; with its
# fixed Message-IDs, effectively-once.
set -eu
command -v postfix >/dev/null || { echo "postfix-sender: postfix is not installed" >&2; exit 3; }
state=$ONECOPY_STATE_DIR
conf=$state/postfix-etc
host=${ONECOPY_SMTP_ADDR%:*}
port=${ONECOPY_SMTP_ADDR##*:}

if [ ! -f "$conf/main.cf" ]; then
	mkdir -p "$conf" "$state/postfix-spool" "$state/postfix-lib"
	# No listener of its own (no smtpd), no chroot, a queue that retries at once.
	sed -e 's/^smtp \{1,\}inet /#&/' -e 's/^\([a-z]* *[a-z]* *[-yn] *[-yn] *\)[-y] /\1n /' /etc/postfix/master.cf >"$conf/master.cf"
	cat >"$conf/main.cf" <<EOF
compatibility_level = 3.6
meta_directory = /etc/postfix
queue_directory = $state/postfix-spool
data_directory = $state/postfix-lib
myhostname = sender.onecopy.test
mydomain = onecopy.test
myorigin = onecopy.test
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
relayhost = [$host]:$port
default_transport = smtp
smtp_dns_support_level = disabled
smtp_tls_security_level = none
smtp_destination_concurrency_limit = 2
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
maillog_file = $state/postfix.log
maillog_file_prefixes = $state
alternate_config_directories = $conf
EOF
	chmod 0755 "$state" "$state/postfix-spool"
fi
postfix -c "$conf" set-permissions >/dev/null 2>&1 || true

# The hand-over is recorded after sendmail returns; a kill in between
# leaves the recipient in "trying": it was handed over if Postfix logged
# its Message-ID or holds it in a queue file (looked for while Postfix is
# down), and is not handed twice.
msgid() { printf '<%s@postfix.onecopy.test>' "$(printf '%s' "$ONECOPY_CAMPAIGN $1" | sha256sum | cut -c1-32)"; }
# Postfix marks a queue file complete with its owner-execute bit; a file a
# killed postdrop left half-written has none and is never delivered.
spool() { find "$state/postfix-spool/maildrop" "$state/postfix-spool/incoming" "$state/postfix-spool/active" "$state/postfix-spool/deferred" -type f -perm -u+x "$@" 2>/dev/null; }
queued() { spool | wc -l; }
touch "$state/handed" "$state/trying"
last=$(cat "$state/trying")
if [ -n "$last" ] && ! grep -qxF "$last" "$state/handed"; then
	id=$(msgid "$last")
	if grep -qF "message-id=$id" "$state/postfix.log" 2>/dev/null || [ -n "$(spool -exec grep -lF "$id" {} +)" ]; then
		echo "$last" >>"$state/handed"
	fi
fi
# Only now: a running Postfix could deliver, and remove, the message looked for.
postfix -c "$conf" start >/dev/null 2>&1
while read -r rcpt; do
	[ -n "$rcpt" ] || continue
	grep -qxF "$rcpt" "$state/handed" && continue
	echo "$rcpt" >"$state/trying"
	printf 'From: <campaign@onecopy.test>\nTo: <%s>\nSubject: campaign %s\nMessage-ID: %s\n\nHello.\n' \
		"$rcpt" "$ONECOPY_CAMPAIGN" "$(msgid "$rcpt")" | sendmail -C "$conf" -f campaign@onecopy.test -- "$rcpt"
	echo "$rcpt" >>"$state/handed"
done <"$ONECOPY_RECIPIENTS"

# Wait until Postfix has delivered (or bounced) everything it was handed.
postqueue -c "$conf" -f >/dev/null 2>&1 || true
while [ "$(queued)" -ne 0 ]; do
	sleep 0.1
done
postfix -c "$conf" stop >/dev/null 2>&1
