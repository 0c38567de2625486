#!/bin/sh
# Detection power (issue 8, figure 6): how many runs does it take to expose
# the built-in checkpoint sender? It records its position after each 250,
# so a kill between a counted message and its record makes it resend that
# address with a new Message-ID: not effectively-once.
#
# Three ways to kill it once per run, each over seeds 1..RUNS:
#   random=1   --kill random=1: at a seeded random coverage point, the
#              moment the copy that reaches it is counted;
#   in-doubt=1 --kill in-doubt=1: at the commit point, the reply held back;
#   time       SIGKILL from outside at a uniformly random moment of the
#              sender's life (what "a crash at an arbitrary time" means);
#              the harness restarts it as a failed attempt.
# A run exposes the bug when it falls short of effectively-once (exit 1).
# With p the share of runs that do, the expected number of runs to the
# first exposure is 1/p. Two state directories: the default disk (the
# sender fsyncs its checkpoint, a window of milliseconds) and tmpfs (fsync
# is free: a window of microseconds, like a sender with a fast store).
#
# usage: bench/detect.sh [RUNS] [RECIPIENTS]   (ONECOPY=bin/onecopy by default)
set -eu
runs=${1:-50}
rcpts=${2:-200}
onecopy=${ONECOPY:-bin/onecopy}
[ -x "$onecopy" ] || { echo "detect.sh: $onecopy not found (make build)" >&2; exit 2; }
disk=$(mktemp -d)
shm=""
if [ -d /dev/shm ] && [ -w /dev/shm ]; then shm=/dev/shm/onecopy-detect.$$; fi
trap 'rm -rf "$disk" ${shm:+"$shm"}' EXIT

# sender_seconds DIR: how long the sender runs when nothing kills it.
sender_seconds() {
	rm -rf "$1/w"
	"$onecopy" run --recipients "$rcpts" --sender builtin:checkpoint --seed 1 --quiet \
		--work-dir "$1/w" --report "$1/report.json" >/dev/null 2>&1
	# The last duration_seconds of the report is the attempt's.
	awk -F': ' '/"duration_seconds"/ { d = $2 } END { sub(/,$/, "", d); print d }' "$1/report.json"
}

# one DIR KILL SEED LIFE: one run; exit status 0 clean, 1 exposed.
one() {
	dir=$1 kill=$2 seed=$3 life=$4
	rm -rf "$dir/w"
	if [ "$kill" != time ]; then
		"$onecopy" run --recipients "$rcpts" --kill "$kill" --sender builtin:checkpoint --seed "$seed" \
			--expect effectively-once --quiet --work-dir "$dir/w" >/dev/null 2>&1
		return
	fi
	"$onecopy" run --recipients "$rcpts" --sender builtin:checkpoint --seed "$seed" --retries 5 \
		--expect effectively-once --quiet --work-dir "$dir/w" >/dev/null 2>&1 &
	harness=$!
	sender=""
	while [ -z "$sender" ] && kill -0 "$harness" 2>/dev/null; do
		sender=$(ps --ppid "$harness" -o pid=,args= | awk '/ sender checkpoint/ { print $1; exit }')
	done
	if [ -n "$sender" ]; then
		sleep "$(awk -v s="$seed" -v t="$life" 'BEGIN { srand(s); printf "%.4f", t * rand() }')"
		kill -KILL "$sender" 2>/dev/null || true
	fi
	wait "$harness"
}

echo "| state dir | kill | runs | exposed | p | runs to expose (1/p) |"
echo "|---|---|---:|---:|---:|---:|"
for where in disk tmpfs; do
	case $where in
	disk) base=$disk ;;
	tmpfs)
		[ -n "$shm" ] || { echo "| tmpfs | (no writable /dev/shm: skipped) | | | | |"; continue; }
		mkdir -p "$shm"
		base=$shm
		;;
	esac
	life=$(sender_seconds "$base")
	for kill in random=1 in-doubt=1 time; do
		exposed=0
		seed=1
		while [ "$seed" -le "$runs" ]; do
			set +e
			one "$base" "$kill" "$seed" "$life"
			rc=$?
			set -e
			case $rc in
			0) ;;
			1) exposed=$((exposed + 1)) ;;
			*) echo "detect.sh: $where, kill $kill, seed $seed: exit $rc" >&2; exit 3 ;;
			esac
			seed=$((seed + 1))
		done
		awk -v w="$where" -v k="$kill" -v n="$runs" -v e="$exposed" -v l="$life" 'BEGIN {
			p = e / n
			if (k == "time") k = sprintf("time (uniform in the sender'"'"'s %.0f ms)", l * 1000)
			printf "| %s | %s | %d | %d | %.2f | %s |\n", w, k, n, e, p, (e ? sprintf("%.2f", 1 / p) : "> " n)
		}'
	done
done
