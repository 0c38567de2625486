package harness_test

import (
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
var onecopyBin string

var _ = SynchronizedBeforeSuite(func() []byte {
	bin, err := gexec.Build("github.com/onecopy/onecopy/cmd/onecopy")
	Expect(err).NotTo(HaveOccurred())
	return []byte(bin)
}, func(bin []byte) {
	onecopyBin = string(bin)
})

var _ = SynchronizedAfterSuite(func() {}, func() {
	gexec.CleanupBuildArtifacts()
})

// builtin is the command line of a built-in sender.
func builtin(name string, args ...string) []string {
	return append([]string{onecopyBin, "sender", name}, args...)
}
