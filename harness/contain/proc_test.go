package contain

import (
	"os"
	"testing"
)

func TestParseStat(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want procInfo
		ok   bool
	}{
		{"42 (sleep) S 7 42 42 0 -1 4194304 100 0 0 0 0 0 0 0 20 0 1 0 123456 8396800 250 18446744073709551615\n", procInfo{ppid: 7, state: 'S', start: 123456}, true},
		// comm is the program's to choose: spaces and ") " in it.
		{"43 (a) b) S (c) Z 1 43 43 0 -1 4194304 100 0 0 0 0 0 0 0 20 0 1 0 99 8396800 250 0\n", procInfo{ppid: 1, state: 'Z', start: 99}, true},
		{"44 (x) S 1 2 3", procInfo{}, false},
		{"garbage", procInfo{}, false},
	} {
		got, ok := parseStat([]byte(tc.in))
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseStat(%q) = %+v, %v; want %+v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
	self, ok := readStat(os.Getpid(), make([]byte, 1024))
	if !ok || self.ppid != os.Getppid() || self.start == 0 {
		t.Errorf("readStat(self) = %+v, %v; want ppid %d", self, ok, os.Getppid())
	}
}

func TestCgroupLine(t *testing.T) {
	text := "12:freezer:/a/b\n4:memory:/m\n1:name=systemd:/s\n0::/user.slice/x\n"
	for _, tc := range []struct{ ctrl, want string }{{"", "/user.slice/x"}, {"freezer", "/a/b"}, {"memory", "/m"}} {
		if got, ok := cgroupLine(text, tc.ctrl); !ok || got != tc.want {
			t.Errorf("cgroupLine(%q) = %q, %v; want %q", tc.ctrl, got, ok, tc.want)
		}
	}
	if _, ok := cgroupLine("4:memory:/m\n", ""); ok {
		t.Error("a v1-only file has no v2 path")
	}
}
