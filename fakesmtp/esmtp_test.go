// The dialogue as production senders speak it, and as a differential
// fuzzer broke it: ESMTP parameters, UTF-8 addresses, PIPELINING groups
// behind a refused MAIL, CHUNKING, and command lines the guard and the
// library could read two ways. Like the robustness cases, each runs against
// the guarded server and the unguarded library, which must show the bug.

package fakesmtp_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/onecopy/onecopy/fakesmtp"
)

// refuseMail is a hook answering every MAIL with 550, as a scenario that
// bounces a sender does.
func refuseMail() fakesmtp.Options {
	return fakesmtp.Options{Hooks: []fakesmtp.Hook{fakesmtp.HookAt(fakesmtp.Moments(fakesmtp.MomentMail),
		fakesmtp.HookFunc(func(context.Context, *fakesmtp.Event) fakesmtp.Action {
			return fakesmtp.Action{Reply: "550 5.7.1 Sender refused", Fault: "test-refuse-mail"}
		}))}}
}

func dialectCases() []rawCase {
	counted := func(addr string) func(r result) string {
		return func(r result) string {
			if n := r.counts[addr]; n > 0 {
				return fmt.Sprintf("a line the SMTP grammar does not allow ran as a command: %s counted %d", addr, n)
			}
			return ""
		}
	}
	replied := func(step int, code string) func(r result) string {
		return func(r result) string {
			if step < len(r.steps) && len(r.steps[step]) > 0 && strings.HasPrefix(r.steps[step][0], code) {
				return fmt.Sprintf("step %d answered %q", step, r.steps[step][0])
			}
			return ""
		}
	}
	rcptV, mailV := rcpt(vAddr), mailA
	msg := "Subject: d\r\n\r\nhi\r\n.\r\n"
	var many strings.Builder
	manyReplies := []string{}
	for i := range 60 {
		many.WriteString(rcpt(fmt.Sprintf("r%d@x.test", i)))
		manyReplies = append(manyReplies, "503")
	}
	return []rawCase{{
		name:  "leading tab before a command",
		steps: []step{{ehlo, []string{"250"}}, {"\t" + mailV, []string{"500"}}, {"\t" + rcptV, []string{"500"}}, {"\tDATA\r\n", []string{"500"}}, {msg, []string{"500", "500", "500", "500"}}},
		want:  map[string]int{},
		kind:  "bad_whitespace",
		bug:   counted(vAddr),
	}, {
		name:  "trailing form feed and vertical tab",
		steps: []step{{ehlo, []string{"250"}}, {mailV, []string{"250"}}, {"RCPT TO:<v@x.test>\f\r\n", []string{"500"}}, {"DATA\v\r\n", []string{"500"}}, {rcpt("w@x.test"), []string{"250"}}, {data, []string{"354"}}, {msg, []string{"250"}}},
		want:  map[string]int{"w@x.test": 1},
		kind:  "bad_whitespace",
		bug:   counted(vAddr),
	}, {
		name:  "Unicode space around a command",
		steps: []step{{ehlo, []string{"250"}}, {mailV, []string{"250"}}, {"\u00a0" + rcptV, []string{"500"}}, {"RCPT TO:<w@x.test>\u0085\r\n", []string{"500"}}, {rcpt("u@x.test"), []string{"250"}}, {data, []string{"354"}}, {msg, []string{"250"}}},
		want:  map[string]int{"u@x.test": 1},
		kind:  "bad_whitespace",
		bug:   counted(vAddr),
	}, {
		name:  "leading space before QUIT",
		steps: []step{{ehlo, []string{"250"}}, {" QUIT\r\n", []string{"500"}}, {"NOOP\r\n", []string{"250"}}},
		want:  map[string]int{},
		kind:  "bad_whitespace",
		bug:   replied(1, "221"),
	}, {
		name: "verbs spelt with non-ASCII letters that upper-case to ASCII",
		// ı (U+0131) upper-cases to I and ſ (U+017F) to S in Go.
		steps: []step{{ehlo, []string{"250"}}, {"maıl FROM:<a@x.test>\r\n", []string{"500"}}, {rcptV, []string{"503"}}, {"DATA\r\n", []string{"503"}}},
		want:  map[string]int{},
		bug:   replied(1, "250"),
	}, {
		name:  "lower-case verbs and doubled spaces are one command",
		steps: []step{{"ehlo client.test\r\n", []string{"250"}}, {"mail  FROM:<a@x.test>\r\n", []string{"250"}}, {"rcpt   to:<v@x.test>  \r\n", []string{"250"}}, {"data\r\n", []string{"354"}}, {msg, []string{"250"}}},
		want:  map[string]int{vAddr: 1},
		noBug: "the library reads these the same way; the case pins down that the guard normalises rather than refuses them",
	}, {
		name:  "control character inside a command",
		steps: []step{{ehlo, []string{"250"}}, {"MAIL FROM:<a@x.test>\x01\r\n", []string{"500"}}, {mailV, []string{"250"}}, {rcptV, []string{"250"}}, {data, []string{"354"}}, {msg, []string{"250"}}},
		want:  map[string]int{vAddr: 1},
		kind:  "control_char",
		bug:   replied(1, "250"),
	}, {
		name:  "invalid UTF-8 in a command",
		steps: []step{{ehlo, []string{"250"}}, {mailV, []string{"250"}}, {"RCPT TO:<caf\xe9@x.test>\r\n", []string{"500"}}, {"RCPT TO:<caf\xe8@x.test>\r\n", []string{"500"}}, {rcptV, []string{"250"}}, {data, []string{"354"}}, {msg, []string{"250"}}},
		want:  map[string]int{vAddr: 1},
		kind:  "bad_utf8",
		bug: func(r result) string {
			if r.counts["caf\xe9@x.test"] > 0 {
				return "invalid UTF-8 became a counter key (strings.ToLower turns every such byte into U+FFFD: two mailboxes, one key)"
			}
			return ""
		},
	}, {
		name:  "ESMTP parameters production senders send",
		steps: []step{{ehlo, []string{"250"}}, {"MAIL FROM:<a@x.test> BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=abc\r\n", []string{"250"}}, {"RSET\r\n", []string{"250"}}, {"MAIL FROM:<a@x.test> AUTH=<> SIZE=10\r\n", []string{"250"}}, {"RCPT TO:<v@x.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;v@x.test\r\n", []string{"250"}}, {data, []string{"354"}}, {msg, []string{"250"}}},
		want:  map[string]int{vAddr: 1},
		bug:   replied(1, "501"),
	}, {
		name:  "parameters refused",
		steps: []step{{ehlo, []string{"250"}}, {"MAIL FROM:<a@x.test> BODY=BINARYMIME\r\n", []string{"555"}}, {"MAIL FROM:<a@x.test> FOO=1\r\n", []string{"555"}}, {"MAIL FROM:<a@x.test> SIZE=x\r\n", []string{"501"}}, {mailV, []string{"250"}}, {"RCPT TO:<v@x.test> NOTIFY=SOMETIMES\r\n", []string{"501"}}},
		want:  map[string]int{},
		noBug: "the library refuses every parameter but SIZE; the case pins down the guard's answers",
	}, {
		name:  "SIZE over the limit refused at MAIL",
		opts:  func() fakesmtp.Options { return fakesmtp.Options{MaxSize: 1000} },
		steps: []step{{ehlo, []string{"250"}}, {"MAIL FROM:<a@x.test> SIZE=1001\r\n", []string{"552"}}, {"MAIL FROM:<a@x.test> SIZE=1000\r\n", []string{"250"}}},
		want:  map[string]int{},
		kind:  "message_too_big",
		check: func(t *testing.T, r result) {
			if !strings.Contains(r.steps[0][0], "SIZE 1000") {
				t.Errorf("EHLO %q does not advertise SIZE 1000", r.steps[0][0])
			}
		},
		bug: func(r result) string {
			if strings.Contains(r.steps[0][0], "SIZE 0") {
				return "EHLO advertised SIZE 0 (no limit) while the server enforces one"
			}
			return ""
		},
	}, {
		name:  "a UTF-8 address is one mailbox in any case",
		steps: []step{{ehlo, []string{"250"}}, {mailV, []string{"250"}}, {"RCPT TO:<ÄRGER@Bücher.test>\r\n", []string{"250"}}, {"RCPT TO:<ärger@bücher.test>\r\n", []string{"250"}}, {data, []string{"354"}}, {msg, []string{"250"}}},
		want:  map[string]int{"ärger@bücher.test": 1},
		bug: func(r result) string {
			if len(r.counts) > 1 {
				return fmt.Sprintf("one mailbox counted under %d keys: %v", len(r.counts), r.counts)
			}
			return ""
		},
	}, {
		name:  "source routes",
		steps: []step{{ehlo, []string{"250"}}, {mailV, []string{"250"}}, {"RCPT TO:<@r.test:a@x.test,b@x.test>\r\n", []string{"501"}}, {"RCPT TO:<@r.test,@s.test:V@x.test>\r\n", []string{"250"}}, {data, []string{"354"}}, {msg, []string{"250"}}},
		want:  map[string]int{vAddr: 1},
		kind:  "bad_address",
		bug: func(r result) string {
			for k := range r.counts {
				if strings.Contains(k, ",") {
					return fmt.Sprintf("a source route became the counter key %q", k)
				}
			}
			return ""
		},
	}, {
		name: "a pipelined group behind a refused MAIL",
		opts: refuseMail,
		steps: []step{{ehlo, []string{"250"}},
			{mailV + many.String() + data, slices.Concat([]string{"550"}, manyReplies, []string{"503"})},
			{"NOOP\r\n", []string{"250"}}},
		want:  map[string]int{},
		noBug: "the library has no MAIL fault to show; the case pins down RFC 2920's 503s, that nothing is counted, and that a group of 60 recipients does not trip the 20-error limit",
	}, {
		name: "a pipelined BDAT behind a refused MAIL is read, not run",
		opts: refuseMail,
		steps: []step{{ehlo, []string{"250"}},
			{mailV + rcptV + bdat(rcpt("evil@x.test")+"DATA\r\nQUIT\r\n", true), []string{"550", "503", "503"}},
			{"NOOP\r\n", []string{"250"}}},
		want:  map[string]int{},
		noBug: "the library does not implement BDAT (it answers 500 and runs the chunk as commands); the case checks the guard reads the chunk whatever it answers",
	}, {
		name: "BDAT chunks make one message",
		steps: []step{{ehlo, []string{"250"}}, {mailV, []string{"250"}}, {rcptV, []string{"250"}},
			{bdat("Subject: chunks\r\n", false), []string{"250"}},
			{bdat("", false), []string{"250"}},
			{bdat("\r\nRCPT TO:<w@x.test>\r\n", true), []string{"250"}},
			{mailV + rcpt("w@x.test") + bdat("hi\r\n", true), []string{"250", "250", "250"}}},
		want:  map[string]int{vAddr: 1, "w@x.test": 1},
		size:  0,
		noBug: "the library does not implement BDAT",
		check: func(t *testing.T, r result) {
			if len(r.sizes) != 2 || r.sizes[0] != 39 || r.sizes[1] != 4 {
				t.Errorf("sizes %v, want [39 4]", r.sizes)
			}
		},
	}, {
		name: "BDAT over MaxSize",
		opts: func() fakesmtp.Options { return fakesmtp.Options{MaxSize: 100} },
		steps: []step{{ehlo, []string{"250"}}, {mailV, []string{"250"}}, {rcptV, []string{"250"}},
			{"BDAT 101\r\n" + strings.Repeat("x", 99) + "\r\n", []string{"552"}},
			{"BDAT 5 LAST\r\nhello", []string{"503"}},
			{mailV + rcptV + "BDAT 100 LAST\r\n" + strings.Repeat("y", 98) + "\r\n", []string{"250", "250", "250"}}},
		want:  map[string]int{vAddr: 1},
		kind:  "message_too_big",
		noBug: "the library does not implement BDAT",
	}, {
		// Found by the differential fuzzer: the transaction stayed open
		// after a BDAT refused for want of recipients, and the client's
		// next MAIL got 503 nested.
		name: "a refused BDAT ends the transaction",
		steps: []step{{ehlo, []string{"250"}}, {mailV, []string{"250"}}, {bdat("hi\r\n", false), []string{"554"}},
			{mailV + rcptV + bdat("hi\r\n", true), []string{"250", "250", "250"}}},
		want:  map[string]int{vAddr: 1},
		noBug: "the library does not implement BDAT",
	}, {
		// Found by the differential fuzzer: the guard compared keywords
		// with strings.EqualFold, which folds Unicode: LAſT (long s) read
		// as LAST, and counted a message no other parser would end there.
		name: "keywords are ASCII: LAſT is not LAST, HDRſ not HDRS",
		steps: []step{{ehlo, []string{"250"}}, {"MAIL FROM:<a@x.test> RET=HDRſ\r\n", []string{"501"}}, {mailV, []string{"250"}}, {rcptV, []string{"250"}},
			{"BDAT 4 LAſT\r\nhi\r\n", []string{"501", "EOF"}}},
		want:  map[string]int{},
		kind:  "bad_bdat",
		noBug: "the library does not implement BDAT nor RET",
	}, {
		name:  "BDAT without a size cannot be skipped",
		steps: []step{{ehlo, []string{"250"}}, {mailV, []string{"250"}}, {rcptV, []string{"250"}}, {"BDAT LAST\r\n" + mailV, []string{"501", "EOF"}}},
		want:  map[string]int{},
		kind:  "bad_bdat",
		noBug: "the library does not implement BDAT",
	}}
}

// bdat is a BDAT command with its chunk.
func bdat(chunk string, last bool) string {
	cmd := fmt.Sprintf("BDAT %d", len(chunk))
	if last {
		cmd += " LAST"
	}
	return cmd + "\r\n" + chunk
}

func TestDialectCases(t *testing.T) {
	for _, tc := range dialectCases() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			t.Run("guarded", func(t *testing.T) { runGuarded(t, tc) })
			t.Run("baseline", func(t *testing.T) {
				r := runBaseline(t, tc)
				switch {
				case tc.bug == nil:
					t.Logf("baseline not expected to fail: %s", tc.noBug)
				default:
					if bug := tc.bug(r); bug != "" {
						t.Logf("baseline shows the bug: %s", bug)
					} else {
						t.Errorf("the unguarded library did not show the bug, so the case cannot fail: replies %q, counts %v", r.all(), r.counts)
					}
				}
			})
		})
	}
}
