// AUTH (RFC 4954), answered by the guard itself: PLAIN, LOGIN and
// CRAM-MD5, any credentials accepted unless Options.Users says otherwise.
// The authenticated user is recorded on every copy the session delivers.

package fakesmtp

import (
	"bytes"
	"crypto/hmac"
	"crypto/md5"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"strconv"
	"strings"
	"time"
)

// authMechanisms is what EHLO advertises.
const authMechanisms = "PLAIN LOGIN CRAM-MD5"

func (s *session) auth(arg string) error {
	switch {
	case s.srv.opts.RequireTLS && !s.tls:
		return s.reply("530 5.7.0 Must issue a STARTTLS command first")
	case s.authed:
		return s.reply("503 5.5.1 Already authenticated")
	case s.inTx:
		return s.reply("503 5.5.1 AUTH not permitted during a mail transaction")
	}
	mech, initial, _ := strings.Cut(arg, " ")
	initial = strings.TrimLeft(initial, " ")
	var user, pass, challenge string
	var ok bool
	switch {
	case equalFold(mech, "PLAIN"):
		resp := initial
		if resp == "" {
			if resp, ok = s.challenge("334 "); !ok {
				return nil
			}
		}
		dec, good := decode64(resp)
		parts := bytes.Split(dec, []byte{0})
		if !good || len(parts) != 3 {
			return s.reply("501 5.5.2 Syntax error: want base64 of authzid NUL user NUL password")
		}
		user, pass = string(parts[1]), string(parts[2])
	case equalFold(mech, "LOGIN"):
		resp := initial
		if resp == "" {
			if resp, ok = s.challenge("334 VXNlcm5hbWU6"); !ok {
				return nil
			}
		}
		u, good := decode64(resp)
		if !good {
			return s.reply("501 5.5.2 Syntax error: user name not base64")
		}
		if resp, ok = s.challenge("334 UGFzc3dvcmQ6"); !ok {
			return nil
		}
		p, good := decode64(resp)
		if !good {
			return s.reply("501 5.5.2 Syntax error: password not base64")
		}
		user, pass = string(u), string(p)
	case equalFold(mech, "CRAM-MD5"):
		if initial != "" {
			return s.reply("501 5.5.2 Syntax error: CRAM-MD5 takes no initial response")
		}
		challenge = "<" + strconv.FormatUint(s.id, 10) + "." + strconv.FormatInt(time.Now().UnixNano(), 10) + "@" + s.srv.opts.Hostname + ">"
		resp, ok := s.challenge("334 " + base64.StdEncoding.EncodeToString([]byte(challenge)))
		if !ok {
			return nil
		}
		dec, good := decode64(resp)
		u, digest, found := strings.Cut(string(dec), " ")
		if !good || !found {
			return s.reply("501 5.5.2 Syntax error: want base64 of user SP digest")
		}
		user, pass = u, digest
	default:
		return s.reply("504 5.5.4 Unrecognized authentication type (PLAIN, LOGIN and CRAM-MD5 are)")
	}
	if !s.srv.credentialsOK(user, pass, challenge) {
		return s.reply("535 5.7.8 Authentication credentials invalid")
	}
	s.authed, s.user = true, user
	return s.reply("235 2.7.0 Authentication successful")
}

// challenge writes a 334 and reads the client's answer; ok is false when
// the exchange ended (cancelled, refused, or the session is over: then
// the caller returns and the next command read notices).
func (s *session) challenge(prompt string) (string, bool) {
	if s.reply(prompt) != nil {
		return "", false
	}
	line, err := s.readLine()
	if err != nil {
		s.fail(err)
		return "", false
	}
	if line == "*" {
		s.reply("501 5.7.0 Authentication cancelled")
		return "", false
	}
	return line, true
}

// decode64 decodes an AUTH response; "=" is the empty one (RFC 4954 4).
func decode64(s string) ([]byte, bool) {
	if s == "=" {
		return nil, true
	}
	b, err := base64.StdEncoding.DecodeString(s)
	return b, err == nil
}

// credentialsOK checks user and pass (for CRAM-MD5: the digest of
// challenge) against Options.Users; with no Users, anything goes.
func (srv *Server) credentialsOK(user, pass, challenge string) bool {
	if srv.opts.Users == nil {
		return true
	}
	want, ok := srv.opts.Users[user]
	if !ok {
		return false
	}
	if challenge != "" {
		m := hmac.New(md5.New, []byte(want))
		m.Write([]byte(challenge))
		want = hex.EncodeToString(m.Sum(nil))
		pass = strings.ToLower(pass)
	}
	return subtle.ConstantTimeCompare([]byte(want), []byte(pass)) == 1
}
