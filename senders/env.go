// env.go: the environment contract between the harness and a sender process
// (the ONECOPY_* variables) and reading the recipient list.
package senders

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/url"
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
	// VarAPIURL is the base URL of the fake email provider APIs over HTTP
	// (http://127.0.0.1:PORT): point a provider SDK's endpoint at it.
	VarAPIURL = "ONECOPY_API_URL"
	// VarSMTPTLSCA is the path of the PEM certificate that signs the fake
	// SMTP server's TLS certificate (STARTTLS and implicit TLS).
	VarSMTPTLSCA = "ONECOPY_SMTP_TLS_CA"
)

// Vars lists every variable of the contract, in the order Environ writes
// them.
func Vars() []string {
	return []string{VarSMTPAddr, VarRecipients, VarStateDir, VarCampaign, VarAttempt, VarInstance, VarAPIURL, VarSMTPTLSCA}
}

// Env is the environment contract as seen by a sender.
type Env struct {
	SMTPAddr       string // host:port of the SMTP server
	RecipientsFile string // path of the recipient list
	StateDir       string // directory that survives restarts within one run
	Campaign       string // campaign id, stable across restarts
	Attempt        int    // 1-based start number
	Instance       int    // 1-based instance number
	APIURL         string // base URL of the fake provider APIs; "" when not given
	SMTPTLSCA      string // path of the CA certificate of the SMTP server's TLS; "" when not given
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
		APIURL:         strings.TrimSpace(getenv(VarAPIURL)),
		SMTPTLSCA:      strings.TrimSpace(getenv(VarSMTPTLSCA)),
	}
	if env.SMTPAddr != "" {
		if _, port, err := net.SplitHostPort(env.SMTPAddr); err != nil || port == "" {
			errs = append(errs, fmt.Errorf("%s=%q is not host:port (for example 127.0.0.1:2525)", VarSMTPAddr, env.SMTPAddr))
		}
	}
	if env.APIURL != "" {
		if u, err := url.Parse(env.APIURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("%s=%q is not a base URL (for example http://127.0.0.1:8025)", VarAPIURL, env.APIURL))
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

// Environ returns env as KEY=value strings, ready for exec.Cmd.Env: the
// one place the harness spells the contract. Optional variables left
// empty are left out.
func (e Env) Environ() []string {
	env := []string{
		VarSMTPAddr + "=" + e.SMTPAddr,
		VarRecipients + "=" + e.RecipientsFile,
		VarStateDir + "=" + e.StateDir,
		VarCampaign + "=" + e.Campaign,
		VarAttempt + "=" + strconv.Itoa(e.Attempt),
		VarInstance + "=" + strconv.Itoa(e.Instance),
	}
	if e.APIURL != "" {
		env = append(env, VarAPIURL+"="+e.APIURL)
	}
	if e.SMTPTLSCA != "" {
		env = append(env, VarSMTPTLSCA+"="+e.SMTPTLSCA)
	}
	return env
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
