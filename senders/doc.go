// doc.go: package documentation for senders.

// Package senders holds onecopy's built-in email senders and a small helper
// for writing senders in Go against the environment contract (DESIGN.md §2).
//
// A sender is a child process of the harness. It reads its SMTP server, its
// list and its state directory from ONECOPY_* variables (see [EnvFrom]), sends
// the campaign and exits 0 when the campaign is complete; any other exit is a
// failed attempt and the harness starts it again. [Main] turns any [Sender]
// into such a program.
//
// The built-ins, by name (see [New]):
//
//   - naive: the buggy job. One pass over the list, no memory between
//     attempts: every retry resends the head of the list.
//   - checkpoint: records the position after each 250 (at-least-once: a kill
//     right after a 250 resends that message with a new Message-ID).
//   - early: records the position before each send (at-most-once: a kill or
//     error mid-send loses that recipient).
//   - ledger: a SQLite ledger with one row per normalised address, a
//     Message-ID fixed per (campaign, address), retries of 4xx, bounces on
//     5xx, a file lock against overlapping instances and a graceful SIGTERM
//     (effectively-once).
package senders
