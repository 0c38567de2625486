// env.go: the environment contract between the harness and a sender process
// (the ONECOPY_* variables) and reading the recipient list.
package senders

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"unicode"

	"github.com/onecopy/onecopy/mailbox"
)

// Names of the environment variables the harness sets for a sender.
const (
	// VarSMTPAddr is host:port of the SMTP server (plain SMTP, no auth).
	VarSMTPAddr = "ONECOPY_SMTP_ADDR"
	// VarRecipients is the path of the list: one address per line, in order.
	VarRecipients = "ONECOPY_RECIPIENTS"
	// VarStateDir is a directory that survives restarts within one run.
	VarStateDir = "ONECOPY_STATE_DIR"
	// VarCampaign is the campaign id, stable across restarts of one run.
	VarCampaign = "ONECOPY_CAMPAIGN"
	// VarAttempt is the 1-based number of this start of the sender.
	VarAttempt = "ONECOPY_ATTEMPT"
	// VarInstance is the 1-based instance number when several run at once.
	VarInstance = "ONECOPY_INSTANCE"
)

// Env is the environment contract as seen by a sender.
type Env struct {
	SMTPAddr       string // host:port of the SMTP server
	RecipientsFile string // path of the recipient list
	StateDir       string // directory that survives restarts within one run
	Campaign       string // campaign id, stable across restarts
	Attempt        int    // 1-based start number
	Instance       int    // 1-based instance number
}

// EnvFrom reads and validates the contract variables through getenv (usually
// os.Getenv). ONECOPY_ATTEMPT and ONECOPY_INSTANCE default to 1 when unset,
// so a sender can be started by hand; every other variable is required. The
// error lists every missing or malformed variable by name.
func EnvFrom(getenv func(string) string) (Env, error) {
	var errs []error
	required := func(name string) string {
		v := getenv(name)
		if strings.TrimSpace(v) == "" {
			errs = append(errs, fmt.Errorf("%s is not set: the harness sets it; set it yourself when running a sender by hand", name))
		}
		return v
	}
	positive := func(name string) int {
		v := strings.TrimSpace(getenv(name))
		if v == "" {
			return 1
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			errs = append(errs, fmt.Errorf("%s=%q is not a positive integer (it counts from 1)", name, v))
		}
		return n
	}
	env := Env{
		SMTPAddr:       required(VarSMTPAddr),
		RecipientsFile: required(VarRecipients),
		StateDir:       required(VarStateDir),
		Campaign:       required(VarCampaign),
		Attempt:        positive(VarAttempt),
		Instance:       positive(VarInstance),
	}
	if env.SMTPAddr != "" {
		if _, port, err := net.SplitHostPort(env.SMTPAddr); err != nil || port == "" {
			errs = append(errs, fmt.Errorf("%s=%q is not host:port (for example 127.0.0.1:2525)", VarSMTPAddr, env.SMTPAddr))
		}
	}
	if strings.ContainsFunc(env.Campaign, unicode.IsControl) {
		errs = append(errs, fmt.Errorf("%s=%q contains control characters; it goes into a Subject header", VarCampaign, env.Campaign))
	}
	if err := errors.Join(errs...); err != nil {
		return Env{}, fmt.Errorf("bad sender environment: %w", err)
	}
	return env, nil
}

// Environ returns env as KEY=value strings, ready for exec.Cmd.Env.
func (e Env) Environ() []string {
	return []string{
		VarSMTPAddr + "=" + e.SMTPAddr,
		VarRecipients + "=" + e.RecipientsFile,
		VarStateDir + "=" + e.StateDir,
		VarCampaign + "=" + e.Campaign,
		VarAttempt + "=" + strconv.Itoa(e.Attempt),
		VarInstance + "=" + strconv.Itoa(e.Instance),
	}
}

// ReadList returns the addresses in the list file at path, in list order,
// each trimmed of surrounding spaces; blank lines are skipped. Duplicates and
// case variants are kept: deduplicating them is the sender's business.
func ReadList(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open recipient list: %w; check %s", err, VarRecipients)
	}
	defer f.Close()
	var list []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if addr := strings.TrimSpace(sc.Text()); addr != "" {
			list = append(list, addr)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read recipient list %s after %d addresses: %w", path, len(list), err)
	}
	return list, nil
}

// Normalize returns the mailbox identity of addr, as the oracle counts it:
// trimmed and lower-cased.
func Normalize(addr string) string {
	return mailbox.Key(addr)
}
