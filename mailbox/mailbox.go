// Package mailbox is the one definition of a mailbox's identity: the key
// under which copies to an address are counted, by the fake server, the
// verdict and the senders alike (docs/addresses.md).
package mailbox

import "strings"

// Key returns the counter key of an address: trimmed and lower-cased, so
// Bob@Example.COM and bob@example.com are one mailbox.
func Key(addr string) string {
	return strings.ToLower(strings.TrimSpace(addr))
}
