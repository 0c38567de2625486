#!/bin/sh
# Records what the environment contract gave this start of the sender, then
# becomes the ledger sender ($ONECOPY_BIN is the onecopy binary under test).
printf '%s %s %s\n' "$ONECOPY_INSTANCE" "$ONECOPY_ATTEMPT" "$ONECOPY_CAMPAIGN" >> "$ONECOPY_STATE_DIR/contract.log"
exec "$ONECOPY_BIN" sender ledger
