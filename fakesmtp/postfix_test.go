// A throwaway Postfix relaying to the fake server as a production relay
// would: TLS required (smtp_tls_security_level=encrypt, verified against
// our CA file), SASL. A private instance with its own configuration and
// queue under a temporary directory; it listens on nothing (inet services
// disabled), takes mail from sendmail -C, and is stopped, with nothing
// left running, at the end.

package fakesmtp_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/onecopy/onecopy/fakesmtp"
)

func TestPostfixRelayTLSAndSASL(t *testing.T) {
	for _, p := range []string{"/usr/sbin/postfix", "/usr/sbin/sendmail"} {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("%s missing: skipping the Postfix relay test (apt-get install postfix, with a policy-rc.d that exits 101 so the package starts no daemon)", p)
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("not root: a private Postfix instance must be started as root")
	}
	if _, err := exec.LookPath("script"); err != nil {
		t.Skip("script (util-linux) missing: Postfix reports start-up errors only on a terminal")
	}
	srv, ca, got := tlsServer(t, fakesmtp.Options{RequireTLS: true, RequireAuth: true, Users: map[string]string{"pf": "secret"}})
	_, port := hostPort(t, srv.Addr())

	dir, err := os.MkdirTemp("", "onecopy-postfix-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	etc, spool, data := filepath.Join(dir, "etc"), filepath.Join(dir, "spool"), filepath.Join(dir, "data")
	for _, d := range []string{etc, spool, data} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(dir, 0o755) // the daemons run as postfix
	if out, err := exec.Command("chown", "postfix:postfix", data).CombinedOutput(); err != nil {
		t.Skipf("no postfix user to own the data directory: %v %s", err, out)
	}
	master, err := os.ReadFile("/etc/postfix/master.cf")
	if err != nil {
		t.Skipf("no /etc/postfix/master.cf to start from: %v", err)
	}
	os.WriteFile(filepath.Join(etc, "master.cf"), master, 0o644)
	mainCf := fmt.Sprintf(`compatibility_level = 3.6
queue_directory = %[1]s
data_directory = %[2]s
mail_owner = postfix
setgid_group = postdrop
myhostname = relay.onecopy.test
mydestination =
alias_maps =
alias_database =
inet_interfaces = loopback-only
inet_protocols = ipv4
master_service_disable = inet
maillog_file = %[3]s/maillog
maillog_file_prefixes = %[3]s
relayhost = [127.0.0.1]:%[4]s
smtp_tls_security_level = encrypt
smtp_tls_CAfile = %[5]s
smtp_sasl_auth_enable = yes
smtp_sasl_password_maps = static:pf:secret
smtp_sasl_security_options = noanonymous
smtp_sasl_tls_security_options = noanonymous
smtputf8_enable = yes
minimal_backoff_time = 1s
maximal_backoff_time = 2s
queue_run_delay = 1s
`, spool, data, dir, port, ca)
	os.WriteFile(filepath.Join(etc, "main.cf"), []byte(mainCf), 0o644)
	postfix := func(verb string) (string, error) {
		out, err := exec.Command("script", "-qec", "/usr/sbin/postfix -c "+etc+" "+verb, "/dev/null").CombinedOutput()
		return string(out), err
	}
	if out, err := postfix("start"); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "maillog"))
		t.Fatalf("postfix start: %v\n%s\n%s", err, out, log)
	}
	pidFile := filepath.Join(spool, "pid", "master.pid")
	t.Cleanup(func() {
		b, _ := os.ReadFile(pidFile)
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		if out, err := postfix("stop"); err != nil {
			t.Errorf("postfix stop: %v\n%s", err, out)
		}
		if pid <= 0 {
			return
		}
		if !eventually(t, 20*time.Second, func() bool { return syscall.Kill(pid, 0) != nil }) {
			syscall.Kill(pid, syscall.SIGKILL) // the master we started, by its id
			t.Errorf("postfix master %d still running after stop: killed", pid)
		}
	})
	send := func(id string, to ...string) {
		t.Helper()
		cmd := exec.Command("/usr/sbin/sendmail", append([]string{"-C", etc, "-f", "a@x.test", "--"}, to...)...)
		cmd.Stdin = strings.NewReader("From: a@x.test\nTo: " + strings.Join(to, ", ") + "\nMessage-ID: <" + id + ">\nSubject: via postfix\n\nhello\n.\n..two\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("sendmail -C: %v\n%s", err, out)
		}
	}
	send("pf1@x", "Bob@Example.COM", "carol@x.test")
	send("pf2@x", "bob@example.com")
	send("pf3@x", "ärger@bücher.test")
	if !eventually(t, 60*time.Second, func() bool { return srv.Snapshot().Copies == 4 }) {
		log, _ := os.ReadFile(filepath.Join(dir, "maillog"))
		t.Fatalf("after 60s the server counted %d copies, want 4; Postfix's log:\n%s", srv.Snapshot().Copies, log)
	}
	sessionsGone(t, srv)
	allOverTLS(t, got, 3, "pf")
	newAPI(t, srv).check(srv, map[string][2]int{"bob@example.com": {2, 2}, "carol@x.test": {1, 1}, "ärger@bücher.test": {1, 1}})
}
