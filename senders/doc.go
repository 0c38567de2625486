// doc.go: package documentation for senders.

// Package senders is the contract between the harness and a sender written
// in Go: the ONECOPY_* environment (see [EnvFrom], and docs/contract.md), and
// [Main], which turns any [Sender] into a program that abides by it. The
// built-in senders are in package builtin.
//
// A sender is a child process of the harness. It reads its SMTP server, its
// list and its state directory from ONECOPY_* variables, sends the campaign
// and exits 0 when the campaign is complete; any other exit is a failed
// attempt and the harness starts it again.
package senders
