// Specs for the pure parts of the harness: the parsing of kill schedules,
// signals, levels, targets and recipient lists.

package harness_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/onecopy/onecopy/fakesmtp"
	"github.com/onecopy/onecopy/harness"
	"github.com/onecopy/onecopy/verdict"
)

var _ = Describe("Parsing", func() {
	isUsage := func(err error) bool {
		var ue *harness.UsageError
		return errors.As(err, &ue)
	}

	DescribeTable("ParseKill accepts every schedule of docs/cli.md",
		func(spec string, want harness.KillSpec) {
			k, err := harness.ParseKill(spec)
			Expect(err).NotTo(HaveOccurred())
			Expect(k).To(Equal(want))
		},
		Entry(nil, "at=25%,50%,75%", harness.KillSpec{Kind: harness.KillAt, Percents: []float64{25, 50, 75}}),
		Entry(nil, "at=12.5%", harness.KillSpec{Kind: harness.KillAt, Percents: []float64{12.5}}),
		Entry(nil, "every=100", harness.KillSpec{Kind: harness.KillEvery, N: 100}),
		Entry(nil, "random=3", harness.KillSpec{Kind: harness.KillRandom, N: 3}),
		Entry(nil, "in-doubt=2", harness.KillSpec{Kind: harness.KillInDoubt, N: 2}),
		Entry(nil, "during-data=1", harness.KillSpec{Kind: harness.KillDuringData, N: 1}),
	)

	It("round-trips a kill schedule through String", func() {
		for _, spec := range []string{"at=25%,50%,75%", "every=100", "random=3", "in-doubt=2", "during-data=1"} {
			k, err := harness.ParseKill(spec)
			Expect(err).NotTo(HaveOccurred())
			Expect(k.String()).To(Equal(spec))
		}
	})

	DescribeTable("ParseKill refuses bad schedules with a usage error naming them",
		func(spec, want string) {
			_, err := harness.ParseKill(spec)
			Expect(err).To(HaveOccurred())
			Expect(isUsage(err)).To(BeTrue(), "%T is not a *UsageError", err)
			Expect(err.Error()).To(ContainSubstring(fmt.Sprintf("--kill %q", spec)))
			Expect(err.Error()).To(ContainSubstring(want))
		},
		Entry(nil, "", "want at=P%"),
		Entry(nil, "bogus", "want at=P%"),
		Entry(nil, "sometimes=3", `unknown schedule "sometimes"`),
		Entry(nil, "at=150%", "not a percentage between 0% and 100%"),
		Entry(nil, "at=0%", "not a percentage"),
		Entry(nil, "at=50", "not a percentage"),
		Entry(nil, "at=25%,x%", `"x%" is not a percentage`),
		Entry(nil, "every=0", "not a positive whole number"),
		Entry(nil, "random=-1", "not a positive whole number"),
		Entry(nil, "in-doubt=two", "not a positive whole number"),
		Entry(nil, "during-data=", "want at=P%"),
	)

	It("parses signals and levels", func() {
		for in, want := range map[string]harness.Signal{"KILL": harness.SigKill, "sigterm": harness.SigTerm, "Stop": harness.SigStop} {
			s, err := harness.ParseSignal(in)
			Expect(err).NotTo(HaveOccurred())
			Expect(s).To(Equal(want))
		}
		_, err := harness.ParseSignal("HUP")
		Expect(isUsage(err)).To(BeTrue())
		Expect(err).To(MatchError(ContainSubstring(`--signal "HUP": want KILL, TERM or STOP`)))

		for _, l := range verdict.Levels() {
			got, err := verdict.ParseLevel(string(l))
			Expect(err).NotTo(HaveOccurred())
			Expect(got).To(Equal(l))
		}
		_, err = verdict.ParseLevel("sometimes")
		Expect(err).To(MatchError(ContainSubstring(`unknown level "sometimes"`)))
		_, err = verdict.ParseLevel("fail")
		Expect(err).To(HaveOccurred(), "fail is a verdict, not a level to expect")
	})

	It("makes synthetic lists", func() {
		Expect(harness.Synthetic(2)).To(Equal([]string{"rcpt000001@onecopy.test", "rcpt000002@onecopy.test"}))
	})

	Describe("ReadList", func() {
		write := func(content string) string {
			p := filepath.Join(GinkgoT().TempDir(), "list.txt")
			Expect(os.WriteFile(p, []byte(content), 0o644)).To(Succeed())
			return p
		}

		It("reads one address per line, skipping blanks and comments, keeping case variants", func() {
			p := write("# subscribers\n\n  Bob@Example.COM \nbob@example.com\r\nann@x.test\n")
			Expect(harness.ReadList(p)).To(Equal([]string{"Bob@Example.COM", "bob@example.com", "ann@x.test"}))
		})

		DescribeTable("refuses a bad line naming FILE:LINE",
			func(content string, line int, want string) {
				p := write(content)
				_, err := harness.ReadList(p)
				Expect(isUsage(err)).To(BeTrue(), "%v", err)
				Expect(err).To(MatchError(ContainSubstring(fmt.Sprintf("%s:%d:", p, line))))
				Expect(err).To(MatchError(ContainSubstring(want)))
			},
			Entry("no @", "a@x.test\nnobody\n", 2, "want local@domain"),
			Entry("nothing after @", "a@x.test\n# c\nb@\n", 3, "want local@domain"),
			Entry("a display name", "Ann <ann@x.test>\n", 1, "angle brackets"),
			Entry("two addresses on a line", "a@x.test, b@x.test\n", 1, "commas"),
			Entry("a control character", "a\x01b@x.test\n", 1, "control character"),
			Entry("an overlong address", strings.Repeat("a", 250)+"@x.test\n", 1, "longer than 254"),
		)

		It("refuses a missing file, an empty list and a binary blob", func() {
			_, err := harness.ReadList(filepath.Join(GinkgoT().TempDir(), "nope.txt"))
			Expect(isUsage(err)).To(BeTrue())
			Expect(err).To(MatchError(ContainSubstring("--list: open")))

			_, err = harness.ReadList(write("# only comments\n\n"))
			Expect(isUsage(err)).To(BeTrue())
			Expect(err).To(MatchError(ContainSubstring("no addresses")))

			_, err = harness.ReadList(write(strings.Repeat("x", 70<<10)))
			Expect(isUsage(err)).To(BeTrue())
			Expect(err).To(MatchError(ContainSubstring("longer than 64 KiB")))
		})
	})

	It("validates a Config before anything runs", func(ctx SpecContext) {
		dir := GinkgoT().TempDir()
		for _, c := range []struct {
			cfg  harness.Config
			want string
		}{
			{harness.Config{Recipients: harness.Synthetic(1)}, "no sender"},
			{harness.Config{Command: []string{"true"}}, "no recipients"},
			{harness.Config{Command: []string{"true"}, Recipients: harness.Synthetic(1), Retries: -1}, "--retries -1"},
			{harness.Config{Command: []string{"true"}, Recipients: harness.Synthetic(1), Instances: 65}, "--instances 65"},
			{harness.Config{Command: []string{"true"}, Recipients: harness.Synthetic(1), Grace: -1}, "negative"},
			{harness.Config{Command: []string{"true"}, Recipients: harness.Synthetic(3),
				Faults: []fakesmtp.FaultSpec{{Kind: "reject-nth", N: 4}}}, "only 3 distinct addresses"},
		} {
			c.cfg.WorkDir = filepath.Join(dir, "work")
			rep, err := harness.Run(ctx, c.cfg)
			Expect(rep).To(BeNil())
			Expect(isUsage(err)).To(BeTrue(), "%v", err)
			Expect(err).To(MatchError(ContainSubstring(c.want)))
			Expect(c.cfg.WorkDir).NotTo(BeAnExistingFile(), "nothing may run on bad input")
		}
	})
})
