#!/bin/sh
# A sender that fails every attempt: the job runner must retry it exactly
# --retries times.
echo "fail.sh: attempt $ONECOPY_ATTEMPT of instance $ONECOPY_INSTANCE gives up" >&2
exit 1
