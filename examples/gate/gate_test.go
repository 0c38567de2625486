// An example of a team gating its own sender in CI with onecopy's scenario
// catalog, in a few lines of an ordinary Ginkgo suite.
package gate_test

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"

	"github.com/onecopy/onecopy/scenarios/scenariotest"
)

func TestGate(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "gate my sender")
}

var senderBin string

var _ = BeforeSuite(func() {
	var err error
	senderBin, err = gexec.Build("github.com/onecopy/onecopy/examples/gate/sender")
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(gexec.CleanupBuildArtifacts)
})

var _ = scenariotest.Describe("my sender", scenariotest.Config{
	CommandFunc: func() []string { return []string{senderBin} },
	Only:        []string{"crash-and-retry", "send-then-record", "two-instances", "one-bad-address"},
})
