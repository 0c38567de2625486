// Command fuzztime splits make fuzz's FUZZTIME between its parts: it prints
// the seconds for the differential fuzzer (half), for each of the two Go
// fuzz targets of fakesmtp (a fifth each) and for the mailbox key's (the
// rest).
package main

import (
	"fmt"
	"os"
	"time"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: fuzztime DURATION")
		os.Exit(2)
	}
	d, err := time.ParseDuration(os.Args[1])
	if err != nil || d < 10*time.Second {
		fmt.Fprintf(os.Stderr, "fuzztime: FUZZTIME=%q: want a duration of 10s or more, like 10m\n", os.Args[1])
		os.Exit(2)
	}
	s := int(d.Seconds())
	half, fifth := s/2, s/5
	fmt.Println(half, fifth, max(s-half-2*fifth, 1))
}
