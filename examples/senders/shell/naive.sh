#!/bin/sh
# The buggy job, in shell with curl: one message per recipient, in list
# order, no memory between attempts; the first failure ends the attempt,
# and the job runner (onecopy) starts it again from the top.
set -eu
while read -r rcpt; do
	[ -n "$rcpt" ] || continue
	printf 'From: <newsletter@example.com>\r\nTo: <%s>\r\nSubject: Our news\r\nMessage-ID: <%s.%s@example.com>\r\n\r\nHello!\r\n' \
		"$rcpt" "$(date +%s%N)" "$$" |
		curl --silent --show-error --fail "smtp://$ONECOPY_SMTP_ADDR" \
			--mail-from newsletter@example.com --mail-rcpt "$rcpt" --upload-file -
done <"$ONECOPY_RECIPIENTS"
