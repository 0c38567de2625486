#!/bin/sh
# Wall time of the whole scenario catalog against the built-in ledger sender
# (issue 8, figure 5). Target: < 30 s on 2 cores.
# usage: bench/gate.sh [ROUNDS]
set -eu
GO=${GO:-go}
rounds=${1:-3}
mkdir -p bin
$GO build -o bin/onecopy ./cmd/onecopy
i=1
while [ "$i" -le "$rounds" ]; do
	start=$(date +%s.%N)
	set +e
	bin/onecopy gate --sender builtin:ledger --seed "$i" >/dev/null 2>&1
	rc=$?
	set -e
	end=$(date +%s.%N)
	awk -v i="$i" -v s="$start" -v e="$end" -v rc="$rc" 'BEGIN { printf "gate round %d (seed %d): %.1f s wall, exit %d\n", i, i, e - s, rc }'
	i=$((i + 1))
done
