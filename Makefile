# onecopy: chaos tests for email senders.
GO ?= go

.PHONY: build test lint bench bench-go bench-sink bench-big bench-gate bench-detect bench-soak demo fakesmtp fuzz fuzz

# A static binary (SQLite is pure Go), stamped with its VCS revision for
# onecopy --version.
build:
	CGO_ENABLED=0 $(GO) build -trimpath -buildvcs=true -o bin/onecopy ./cmd/onecopy

# Every package, the Ginkgo suites included, under the race detector.
test:
	$(GO) test -race -count=1 ./...

# The figures of docs/PERFORMANCE.md, each beside its reference measured in
# the same run (about 20 minutes on 2 cores). Not part of `make test`: no
# timed assertion lives in a test. Each part runs alone too.
bench: bench-go bench-sink bench-gate bench-detect bench-soak bench-big

# Go benchmarks: the oracle (copies/s, bytes per recipient at 1,000,000),
# whole transactions through the guard, the providers' APIs beside SMTP,
# the kill -> restart cycle per containment mode beside plain os/exec, and
# the checker's own cost (Judge per copy, onecopy check per copy).
bench-go:
	$(GO) test -run '^$$' -bench . -benchmem -count 1 ./fakesmtp ./harness ./harness/contain ./verdict ./report

# fakesmtp vs Postfix smtp-sink (skipped, with a message, without Postfix).
bench-sink:
	bench/smtpsink.sh

# A 1,000,000-recipient run of the ledger sender with 4 random kills.
bench-big: build
	$(GO) run ./bench/bigrun -onecopy bin/onecopy

# The whole scenario catalog, sequential and --parallel, against the Go
# and the Python ledger.
bench-gate:
	bench/gate.sh

# A soak's memory per campaign (live heap and RSS, fitted over campaigns).
bench-soak: build
	$(GO) run ./bench/soakmem -onecopy bin/onecopy -duration 1m

# Runs needed to expose the checkpoint sender: random=1 vs in-doubt=1 kills.
bench-detect: build
	bench/detect.sh

# Fuzz the fake SMTP server for FUZZTIME (default 10 minutes): half of it
# the differential dialogue fuzzer (whole sessions against a client-side
# ledger; the seed is printed, ONECOPY_FUZZ_SEED replays it), the rest the
# Go fuzz targets on the guard's parsers, on raw session bytes and on the
# mailbox key. Findings land in fakesmtp/testdata/fuzz and mailbox/testdata/fuzz.
FUZZTIME ?= 10m
fuzz:
	@secs=$$($(GO) run ./bench/fuzztime $(FUZZTIME)) && set -- $$secs && \
	ONECOPY_FUZZ_TIME=$${1}s $(GO) test -race -count=1 -timeout 0 -run '^TestDifferentialDialogues$$' -v ./fakesmtp | grep -v '^        ' && \
	$(GO) test -run '^$$' -fuzz '^FuzzCommandLine$$' -fuzztime $${2}s ./fakesmtp && \
	$(GO) test -run '^$$' -fuzz '^FuzzSessionBytes$$' -fuzztime $${2}s ./fakesmtp && \
	$(GO) test -run '^$$' -fuzz '^FuzzKey$$' -fuzztime $${3}s ./mailbox

# The 4-copies bug, reproduced with the built-in naive sender.
demo:
	$(GO) run ./cmd/onecopy repro

# The counting fake SMTP server on its own (SMTP 127.0.0.1:2525, API 127.0.0.1:8025).
fakesmtp:
	$(GO) run ./cmd/onecopy fakesmtp

# gofmt, vet, a tidy go.mod, and the layout: the judging side (history,
# verdict, report) never imports the running side.
lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@$(GO) mod tidy -diff >/dev/null || { echo "go.mod is not tidy: run go mod tidy"; $(GO) mod tidy -diff; exit 1; }
	@bad=$$($(GO) list -deps ./history ./verdict ./report | grep -E '^github.com/onecopy/onecopy/(harness|fakesmtp|scenarios|cmd)'); \
	if [ -n "$$bad" ]; then echo "the judging side imports the running side:"; echo "$$bad"; exit 1; fi
