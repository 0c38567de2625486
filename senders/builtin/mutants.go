// mutants.go: the built-in senders that carry one real bug on purpose, so
// the scenario catalog can prove that it catches each (like mutation
// testing), and the description of every built-in for listings and docs.
package builtin

import (
	"cmp"
	"os"
	"time"

	"github.com/onecopy/onecopy/senders"
)

// Info describes a built-in sender.
type Info struct {
	Name string
	// Correct: the sender reaches, under every scenario of the catalog, the
	// level a correct sender reaches there. The others carry one bug.
	Correct bool
	// Bug is that bug in one line ("" when Correct).
	Bug string
	// Rows are the rows of the failure-mode table in docs/failure-modes.md
	// that the bug reproduces.
	Rows []int
	// Exposes is chaos that shows the bug, as onecopy run flags.
	Exposes string
}

// Describe returns what the built-in sender called name is, and whether it
// knows it.
func Describe(name string) (Info, bool) {
	for _, in := range baseInfos() {
		if in.Name == name {
			return in, true
		}
	}
	if m, ok := findMutant(name); ok {
		return m.Info, true
	}
	return Info{}, false
}

// baseInfos describes the built-ins that are not mutants of the ledger.
func baseInfos() []Info {
	return []Info{
		{Name: "naive", Bug: "no memory between attempts: every retry resends the head of the list with new Message-IDs",
			Rows: []int{1, 15}, Exposes: "--fault reject-nth=101 --retries 3"},
		{Name: "checkpoint", Bug: "records its position after each 250 with new Message-IDs: a kill before the record resends that message as a new one",
			Rows: []int{2}, Exposes: "--kill in-doubt=3 --expect effectively-once"},
		{Name: "early", Bug: "records its position before sending: a kill mid-send loses that recipient",
			Rows: []int{3}, Exposes: "--kill during-data=3"},
		{Name: "ledger", Correct: true},
		{Name: "naive-http", Bug: "naive over Resend's API: every retry resends the head of the list with new Message-IDs",
			Rows: []int{1, 15}, Exposes: "--fault reject-nth=101 --retries 3"},
		{Name: "ledger-http", Correct: true},
		{Name: "ledger-http-key", Correct: true},
	}
}

// mutant is a built-in with one bug.
type mutant struct {
	Info
	build func(Options) (senders.Sender, error)
}

// mutantNames lists the mutants, for Names.
func mutantNames() []string {
	var names []string
	for _, m := range mutants() {
		names = append(names, m.Name)
	}
	return names
}

// findMutant returns the mutant called name.
func findMutant(name string) (mutant, bool) {
	for _, m := range mutants() {
		if m.Name == name {
			return m, true
		}
	}
	return mutant{}, false
}

// mutants returns the mutants, each the correct ledger (or the checkpoint
// list sender) with exactly one bug. Each entry says the bug, the failure it
// reproduces and the chaos that exposes it.
func mutants() []mutant {
	return []mutant{
		// Records its position only every 10 sends, with fresh Message-IDs:
		// a crash re-sends up to 9 messages the last record did not cover,
		// as new messages. Any kill exposes it.
		{Info{Name: "checkpoint-every", Bug: "records its list position every 10 sends, with fresh Message-IDs: a crash re-sends up to 9",
			Rows: []int{2}, Exposes: "--kill at=25%,50%,75% --expect effectively-once"},
			func(o Options) (senders.Sender, error) {
				o, err := o.withDefaults()
				if err != nil {
					return nil, err
				}
				return newListSender("checkpoint-every", recordAfter, 10, o)
			}},
		// A lease with an expiry instead of a lock held for the run, and no
		// fencing: an instance paused past the 300ms TTL wakes up and keeps
		// sending the pending list it read at start, which the instance
		// that took the lease over also sends. A paused instance exposes it.
		{Info{Name: "lease", Bug: "a 300ms lease file instead of a lock, refreshed without checking it still holds it: a paused instance wakes and sends what its successor sent",
			Rows: []int{9, 10}, Exposes: "--instances 2 --kill during-data=1 --signal STOP --pause 1s --target sending"},
			ledgerMutant("lease", bugs{lock: lockLease}, Options{})},
		// No lock at all: two instances at once both send the pending list.
		{Info{Name: "no-lock", Bug: "takes no lock: two instances at once both send the pending list",
			Rows: []int{12}, Exposes: "--instances 2"},
			ledgerMutant("no-lock", bugs{lock: lockNone}, Options{})},
		// A 4xx is taken as final: throttled or greylisted recipients are
		// bounced by the sender itself and the campaign finishes short.
		{Info{Name: "tempfail-final", Bug: "treats a 4xx as final and bounces the address: the campaign finishes short",
			Rows: []int{17}, Exposes: "--fault greylist"},
			ledgerMutant("tempfail-final", bugs{tempFinal: true}, Options{})},
		// Batches of 10; a refused RCPT fails the batch, which is re-sent
		// whole (its accepted recipients got it already) up to 5 tries, then
		// the refused are given up: the good addresses of that batch get up
		// to 5 copies. One bad or throttled address exposes it.
		{Info{Name: "batch-resend", Bug: "batches of 10; any refused RCPT re-sends the whole batch, accepted recipients too, up to 5 tries",
			Rows: []int{15, 16}, Exposes: "--fault reject-nth=5"},
			ledgerMutant("batch-resend", bugs{resendBatch: 5}, Options{Batch: 10})},
		// A new Message-ID on every send: the resend of a message in doubt
		// is a new message, which no mailbox can deduplicate. A kill or a
		// cut between the server's commit and its 250 exposes it.
		{Info{Name: "fresh-id", Bug: "a new Message-ID on every send: a resend after a doubt is a new message",
			Rows: []int{2, 7}, Exposes: "--kill in-doubt=3 --expect effectively-once"},
			ledgerMutant("fresh-id", bugs{freshID: true}, Options{})},
		// Waits only 200ms for the reply to the final dot, then hangs up and
		// retries as a new message (a 5s client timeout retried as a new job
		// sent 7 copies of one post): a slow 250 exposes it.
		{Info{Name: "short-timeout", Bug: "waits only 200ms for the reply to the final dot, then hangs up and re-sends with a new Message-ID",
			Rows: []int{6}, Exposes: "--fault slow-ack=1s@0.05 --expect effectively-once"},
			ledgerMutant("short-timeout", bugs{dotTimeout: 200 * time.Millisecond}, Options{})},
		// Ignores SIGTERM and keeps sending until the grace runs out and a
		// SIGKILL cuts it mid-transaction. A deploy's SIGTERM exposes it.
		{Info{Name: "term-ignore", Bug: "ignores SIGTERM and keeps sending until the SIGKILL at the end of the grace",
			Rows: []int{11}, Exposes: "--signal TERM --grace 1s --kill at=30%,60% --fault slow-ack=100ms --recipients 40"},
			ledgerMutant("term-ignore", bugs{term: termIgnore}, Options{})},
		// Exits at once on SIGTERM, in the middle of whatever transaction it
		// has in hand, so the restart resends a message the server may have
		// counted. A deploy's SIGTERM exposes it.
		{Info{Name: "term-exit", Bug: "exits at once on SIGTERM, in the middle of the transaction in hand",
			Rows: []int{11}, Exposes: "--signal TERM --grace 1s --kill at=30%,60% --fault slow-ack=100ms --recipients 40"},
			ledgerMutant("term-exit", bugs{term: termExit}, Options{})},
		// Deduplicates the list as typed: Bob@x.test and bob@x.test are one
		// mailbox, and it sends each a copy (with different Message-IDs).
		{Info{Name: "case-sensitive", Bug: "dedups the list as typed: Bob@x.test and bob@x.test both get a copy",
			Rows: []int{20}, Exposes: "a list with case variants (onecopy gate --only case-variants, or --list FILE)"},
			ledgerMutant("case-sensitive", bugs{asTyped: true}, Options{})},
		// Reports the campaign complete with the last tenth of the list
		// never sent. Any run exposes it.
		{Info{Name: "exit-early", Bug: "exits 0 with the last tenth of the list never sent",
			Exposes: "any run (--recipients 200)"},
			ledgerMutant("exit-early", bugs{stopShort: true}, Options{})},
		// Also mails an address that is not on the list (a test inbox left
		// in the code). Any run exposes it.
		{Info{Name: "off-list", Bug: "also mails " + offListAddr + ", which is not on the list",
			Exposes: "any run (--recipients 200)"},
			ledgerMutant("off-list", bugs{offList: offListAddr}, Options{})},
		// 4 connections, and a restart resumes after the highest list
		// position delivered: lower positions still in flight, or being
		// retried after a 4xx, when the sender died are skipped for good.
		// Kills while some addresses are being retried expose it.
		{Info{Name: "high-water", Bug: "4 connections; a restart resumes after the highest list position delivered, skipping lower ones in flight or being retried",
			Rows: []int{5}, Exposes: "--kill at=30%,60% --fault tempfail=0.1"},
			ledgerMutant("high-water", bugs{highWater: true}, Options{Connections: 4})},
	}
}

// offListAddr is the off-list mutant's extra recipient.
const offListAddr = "seed-test@onecopy.test"

// ledgerMutant returns a constructor of the ledger with bugs on, whose
// Batch and Connections default to shape's when unset.
func ledgerMutant(name string, b bugs, shape Options) func(Options) (senders.Sender, error) {
	return func(o Options) (senders.Sender, error) {
		o.Batch = cmp.Or(o.Batch, shape.Batch)
		o.Connections = cmp.Or(o.Connections, shape.Connections)
		o, err := o.withDefaults()
		if err != nil {
			return nil, err
		}
		return &ledger{name: name, opts: o, bugs: b, exit: os.Exit}, nil
	}
}
