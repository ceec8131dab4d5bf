package api

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// TestReadBody: a body of up to limit bytes is read whole, into the buffer
// given when it fits; one byte more is errBodyTooLarge, having read at most
// one byte past the limit; a reader's error is returned.
func TestReadBody(t *testing.T) {
	const limit = 100
	for _, tc := range []struct {
		name    string
		size    int
		bufCap  int
		oneByte bool
		wantErr error
	}{
		{"empty", 0, 16, false, nil},
		{"under the buffer", 10, 16, false, nil},
		{"grows the buffer", 90, 16, false, nil},
		{"exactly the limit", limit, 16, false, nil},
		{"exactly the limit, a byte at a time", limit, 1, true, nil},
		{"one byte over", limit + 1, 16, false, errBodyTooLarge},
		{"one byte over, a byte at a time", limit + 1, 0, true, errBodyTooLarge},
		{"far over, in a big buffer", 10 * limit, 64 * limit, false, errBodyTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := strings.Repeat("x", tc.size)
			r := iotestReader(strings.NewReader(body), tc.oneByte)
			got, err := readBody(r, make([]byte, 0, tc.bufCap), limit)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			switch {
			case err == nil && string(got) != body:
				t.Errorf("read %d bytes, want the body's %d", len(got), tc.size)
			case err != nil && len(got) > limit+1:
				t.Errorf("read %d bytes before failing, want at most %d", len(got), limit+1)
			}
		})
	}
	boom := errors.New("boom")
	if _, err := readBody(iotest.ErrReader(boom), nil, limit); !errors.Is(err, boom) {
		t.Errorf("a failing reader: err = %v, want it", err)
	}
	if got, err := readBody(bytes.NewReader([]byte("{}")), nil, 1<<62); err != nil || string(got) != "{}" {
		t.Errorf("a huge limit: %q, %v", got, err)
	}
}

func iotestReader(r *strings.Reader, oneByte bool) io.Reader {
	if oneByte {
		return iotest.OneByteReader(r)
	}
	return r
}
