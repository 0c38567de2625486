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
// gobatchBin is testdata/gobatch, a sender written apart from onecopy.
var onecopyBin, gobatchBin string

var _ = SynchronizedBeforeSuite(func() []byte {
	bin, err := gexec.Build("github.com/onecopy/onecopy/cmd/onecopy")
	Expect(err).NotTo(HaveOccurred())
	gobatch, err := gexec.Build("./testdata/gobatch")
	Expect(err).NotTo(HaveOccurred())
	return []byte(bin + "\n" + gobatch)
}, func(bins []byte) {
	onecopyBin, gobatchBin, _ = strings.Cut(string(bins), "\n")
})

var _ = SynchronizedAfterSuite(func() {}, func() {
	gexec.CleanupBuildArtifacts()
})

// builtin is the command line of a built-in sender.
func builtin(name string, args ...string) []string {
	return append([]string{onecopyBin, "sender", name}, args...)
}
