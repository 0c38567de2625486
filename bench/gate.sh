#!/bin/sh
# Wall time of the whole scenario catalog (onecopy gate), sequential and
# parallel, against the built-in ledger and against the example Python
# ledger (examples/senders/python/ledger.py), each measured in the same run.
# Targets on 2 cores: < 10 s for the Go ledger, < 15 s for the Python one.
# usage: bench/gate.sh [ROUNDS]
set -eu
GO=${GO:-go}
rounds=${1:-3}
mkdir -p bin
$GO build -o bin/onecopy ./cmd/onecopy
run() { # label, parallel, seed, sender args...
	label=$1 par=$2 seed=$3
	shift 3
	start=$(date +%s.%N)
	set +e
	bin/onecopy gate --seed "$seed" --parallel "$par" "$@" >/dev/null 2>&1
	rc=$?
	set -e
	end=$(date +%s.%N)
	awk -v l="$label" -v p="$par" -v i="$seed" -v s="$start" -v e="$end" -v rc="$rc" \
		'BEGIN { printf "gate %-14s --parallel %d (seed %d): %5.1f s wall, exit %d\n", l, p, i, e - s, rc }'
}
i=1
while [ "$i" -le "$rounds" ]; do
	for par in 1 2 4; do
		run "go ledger" "$par" "$i" --sender builtin:ledger
	done
	if command -v python3 >/dev/null; then
		for par in 1 2 4; do
			run "python ledger" "$par" "$i" -- python3 examples/senders/python/ledger.py
		done
	fi
	i=$((i + 1))
done
