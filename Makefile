# onecopy: chaos tests for email senders.
GO ?= go

.PHONY: build test bench demo lint fakesmtp

build:
	$(GO) build -o bin/onecopy ./cmd/onecopy

# Every package, the Ginkgo suites included, under the race detector.
test:
	$(GO) test -race -count=1 ./...

bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 1 ./...

# The 4-copies bug, reproduced with the built-in naive sender.
demo:
	$(GO) run ./cmd/onecopy repro

# The counting fake SMTP server on its own (SMTP 127.0.0.1:2525, API 127.0.0.1:8025).
fakesmtp:
	$(GO) run ./cmd/onecopy fakesmtp

lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
