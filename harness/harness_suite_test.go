package harness_test

import (
	"strings"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"
)

func TestHarness(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "harness")
}

// onecopyBin is the onecopy binary, built once per suite: the built-in
// senders run as `onecopy sender NAME`, and the CLI specs run it as users do.
// goLedgerBin is examples/senders/go/ledger, a sender written apart from
// onecopy.
var onecopyBin, goLedgerBin string

var _ = SynchronizedBeforeSuite(func() []byte {
	bin, err := gexec.Build("github.com/onecopy/onecopy/cmd/onecopy")
	Expect(err).NotTo(HaveOccurred())
	goLedger, err := gexec.Build("github.com/onecopy/onecopy/examples/senders/go/ledger")
	Expect(err).NotTo(HaveOccurred())
	return []byte(bin + "\n" + goLedger)
}, func(bins []byte) {
	onecopyBin, goLedgerBin, _ = strings.Cut(string(bins), "\n")
})

var _ = SynchronizedAfterSuite(func() {}, func() {
	gexec.CleanupBuildArtifacts()
})

// builtin is the command line of a built-in sender.
func builtin(name string, args ...string) []string {
	return append([]string{onecopyBin, "sender", name}, args...)
}
