// The guard measures each message and finds its Message-ID while the body
// streams (the library gets an empty body): checked here against a plain
// reading of the message, whatever the reads the body arrives in.

package fakesmtp_test

import (
	"bufio"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/onecopy/onecopy/fakesmtp"
)

// unstuff undoes dot stuffing of a body sent with its final dot line.
func unstuff(sent string) string {
	lines := strings.SplitAfter(strings.TrimSuffix(sent, ".\r\n"), "\r\n")
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(strings.TrimPrefix(l, "."))
	}
	return b.String()
}

// refMessageID reads the Message-ID header of msg the plain way: unfold
// the header section, find the field by name, whatever its case.
func refMessageID(msg string) string {
	header, _, _ := strings.Cut(msg, "\r\n\r\n")
	if strings.HasPrefix(msg, "\r\n") {
		return ""
	}
	var fields []string
	for _, l := range strings.Split(header, "\r\n") {
		if (strings.HasPrefix(l, " ") || strings.HasPrefix(l, "\t")) && len(fields) > 0 {
			fields[len(fields)-1] += strings.TrimSpace(l)
			continue
		}
		fields = append(fields, l)
	}
	for _, f := range fields {
		name, value, ok := strings.Cut(f, ":")
		if ok && strings.EqualFold(strings.TrimSpace(name), "Message-ID") {
			return strings.TrimSpace(value)
		}
	}
	return ""
}

func TestBodyMeasuredAsItStreams(t *testing.T) {
	long := strings.Repeat("0123456789abcdef", 300) // spans the guard's 4 KiB reads
	bodies := []string{
		"Message-ID: <a@x>\r\nSubject: hi\r\n\r\nhello\r\n.\r\n",
		"Subject: hi\r\nmessage-id:   <b@x>  \r\n\r\n..dot\r\n...two\r\n.\r\n",
		"Subject: folded\r\nMessage-ID:\r\n <c@x>\r\n\r\nbody\r\n.\r\n",
		"Subject: none\r\n\r\nMessage-ID: <in-body@x>\r\n.\r\n",
		"\r\nMessage-ID: <after-empty-line@x>\r\n.\r\n",
		"Message-ID: <header-only@x>\r\n.\r\n",
		".\r\n",
		"X-Long: " + long + "\r\nMessage-ID: <d@x>\r\n\r\n" + long + "\r\n." + long + "\r\n.\r\n",
		"Subject: s\r\n\r\n" + strings.Repeat(".x\r\n", 2000) + ".\r\n",
		"Subject: s\r\n\r\n\r\n\r\n.\r\n",
	}
	var mu sync.Mutex
	var got []fakesmtp.Delivery
	srv := start(t, fakesmtp.Options{OnDelivery: func(d fakesmtp.Delivery) {
		mu.Lock()
		got = append(got, d)
		mu.Unlock()
	}})
	conn, err := net.Dial("tcp", srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	expect := func(code string) {
		t.Helper()
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			line, err := r.ReadString('\n')
			if err != nil || !strings.HasPrefix(line, code) {
				t.Fatalf("want %s, got %q (%v)", code, line, err)
			}
			if len(line) < 4 || line[3] != '-' {
				return
			}
		}
	}
	expect("220")
	conn.Write([]byte("EHLO t.test\r\n"))
	expect("250")
	n := 0
	for _, chunk := range []int{1, 3, 17, 1 << 20} {
		for _, body := range bodies {
			if chunk < 4 && len(body) > 200 {
				continue // a few bytes at a time is for the short ones
			}
			n++
			conn.Write([]byte("MAIL FROM:<a@x.test>\r\nRCPT TO:<r" + strconv.Itoa(n) + "@x.test>\r\nDATA\r\n"))
			expect("250")
			expect("250")
			expect("354")
			for i := 0; i < len(body); i += chunk {
				conn.Write([]byte(body[i:min(i+chunk, len(body))]))
				if chunk < 4 {
					time.Sleep(50 * time.Microsecond) // let the guard read it apart
				}
			}
			expect("250")
			mu.Lock()
			d := got[len(got)-1]
			mu.Unlock()
			msg := unstuff(body)
			if d.Size != len(msg) || d.MessageID != refMessageID(msg) {
				t.Errorf("chunks of %d, body %.40q: size %d id %q, want %d and %q", chunk, body, d.Size, d.MessageID, len(msg), refMessageID(msg))
			}
		}
	}
	if srv.Oracle().Copies() != int64(n) {
		t.Errorf("%d copies counted, want %d", srv.Oracle().Copies(), n)
	}
}
