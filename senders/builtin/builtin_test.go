package builtin

import (
	"strings"
	"testing"
)

func TestNewAndNames(t *testing.T) {
	for _, name := range Names() {
		if s, err := New(name, Options{}); err != nil || s == nil {
			t.Errorf("New(%q): %v", name, err)
		}
	}
	if _, err := New("nope", Options{}); err == nil || !strings.Contains(err.Error(), "ledger") {
		t.Errorf("unknown name: got %v, want an error listing the names", err)
	}
	if _, err := New("naive", Options{From: "a b@x"}); err == nil {
		t.Error("bad From accepted")
	}
}
