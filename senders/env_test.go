// env_test.go: tests for the environment contract, the list reader, Run and
// the built-in factory.
package senders

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func mapEnv(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func goodVars() map[string]string {
	return map[string]string{
		VarSMTPAddr: "127.0.0.1:2525", VarRecipients: "/tmp/list", VarStateDir: "/tmp/state",
		VarCampaign: "camp-7", VarAttempt: "3", VarInstance: "2",
	}
}

func TestEnvFromValid(t *testing.T) {
	env, err := EnvFrom(mapEnv(goodVars()))
	if err != nil {
		t.Fatal(err)
	}
	want := Env{SMTPAddr: "127.0.0.1:2525", RecipientsFile: "/tmp/list", StateDir: "/tmp/state", Campaign: "camp-7", Attempt: 3, Instance: 2}
	if env != want {
		t.Fatalf("got %+v, want %+v", env, want)
	}
	// Environ round-trips.
	m := map[string]string{}
	for _, kv := range env.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	if again, err := EnvFrom(mapEnv(m)); err != nil || again != want {
		t.Fatalf("Environ round trip: %+v, %v", again, err)
	}
}

func TestEnvFromDefaultsAttemptAndInstance(t *testing.T) {
	vars := goodVars()
	delete(vars, VarAttempt)
	delete(vars, VarInstance)
	env, err := EnvFrom(mapEnv(vars))
	if err != nil || env.Attempt != 1 || env.Instance != 1 {
		t.Fatalf("got %+v, %v; want attempt and instance 1", env, err)
	}
}

func TestEnvFromErrors(t *testing.T) {
	for _, tc := range []struct {
		name, key, value string
	}{
		{"missing addr", VarSMTPAddr, ""},
		{"addr without port", VarSMTPAddr, "localhost"},
		{"missing list", VarRecipients, ""},
		{"missing state dir", VarStateDir, "  "},
		{"missing campaign", VarCampaign, ""},
		{"campaign with newline", VarCampaign, "a\r\nBcc: x@y"},
		{"attempt zero", VarAttempt, "0"},
		{"attempt not a number", VarAttempt, "two"},
		{"instance negative", VarInstance, "-1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vars := goodVars()
			vars[tc.key] = tc.value
			_, err := EnvFrom(mapEnv(vars))
			if err == nil || !strings.Contains(err.Error(), tc.key) {
				t.Fatalf("error %v does not name %s", err, tc.key)
			}
		})
	}
	t.Run("all missing named at once", func(t *testing.T) {
		_, err := EnvFrom(mapEnv(nil))
		for _, k := range []string{VarSMTPAddr, VarRecipients, VarStateDir, VarCampaign} {
			if err == nil || !strings.Contains(err.Error(), k) {
				t.Errorf("error %v does not name %s", err, k)
			}
		}
	})
}

func TestReadList(t *testing.T) {
	path := filepath.Join(t.TempDir(), "list")
	content := "  a@x.test \r\n\r\nB@x.test\n\t\nb@X.test\nc@x.test" // no final newline
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := ReadList(path)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"a@x.test", "B@x.test", "b@X.test", "c@x.test"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	if _, err := ReadList(filepath.Join(t.TempDir(), "nope")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: got %v, want ErrNotExist", err)
	}
}

func TestNormalize(t *testing.T) {
	if got := Normalize("  Bob@Example.COM\t"); got != "bob@example.com" {
		t.Fatalf("got %q", got)
	}
}

func TestRun(t *testing.T) {
	vars := goodVars()
	ok := SenderFunc(func(context.Context, Env) error { return nil })
	fail := SenderFunc(func(context.Context, Env) error { return errors.New("boom") })
	wait := SenderFunc(func(ctx context.Context, _ Env) error { <-ctx.Done(); return ctx.Err() })
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()

	for _, tc := range []struct {
		name   string
		ctx    context.Context
		s      Sender
		getenv func(string) string
		code   int
		stderr string
	}{
		{"complete", context.Background(), ok, mapEnv(vars), 0, ""},
		{"error", context.Background(), fail, mapEnv(vars), 1, "boom"},
		{"bad env", context.Background(), ok, mapEnv(nil), 1, VarSMTPAddr},
		{"interrupted", cancelled, wait, mapEnv(vars), 1, "interrupted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			code := Run(tc.ctx, tc.s, tc.getenv, &stderr)
			if code != tc.code || !strings.Contains(stderr.String(), tc.stderr) {
				t.Fatalf("exit %d, stderr %q; want %d and %q", code, stderr.String(), tc.code, tc.stderr)
			}
			if tc.code == 0 && stderr.Len() != 0 {
				t.Fatalf("stderr on success: %q", stderr.String())
			}
		})
	}
}
