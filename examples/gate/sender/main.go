// Command sender is an example of a team's own sender written in Go against
// onecopy's environment contract. Here it reuses the built-in ledger; a real
// team would put its production sending code behind senders.Main.
package main

import (
	"fmt"
	"os"

	"github.com/onecopy/onecopy/senders"
	"github.com/onecopy/onecopy/senders/builtin"
)

func main() {
	s, err := builtin.New("ledger", builtin.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	senders.Main(s)
}
