package server

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
)

// frameEnds scans data as WebSocket frames, the plain way: where each
// complete frame ends, whether a close frame ends the relay, and where
// the last header that was read whole ends (a relay writes a header only
// once it has all of it).
func frameEnds(data []byte) (ends []int, sawClose bool, lastHeaderEnd int) {
	i := 0
	for {
		if len(data)-i < 2 {
			return ends, false, i
		}
		ext := map[byte]int{126: 2, 127: 8}[data[i+1]&0x7f]
		if data[i+1]&0x80 != 0 {
			ext += 4
		}
		if len(data)-i < 2+ext {
			return ends, false, i
		}
		var n uint64
		switch data[i+1] & 0x7f {
		case 126:
			n = uint64(binary.BigEndian.Uint16(data[i+2:]))
		case 127:
			n = binary.BigEndian.Uint64(data[i+2:]) &^ (1 << 63)
		default:
			n = uint64(data[i+1] & 0x7f)
		}
		if n > uint64(len(data)-i-2-ext) {
			return ends, false, len(data)
		}
		end := i + 2 + ext + int(n)
		ends = append(ends, end)
		if data[i]&0x0f == 0x8 {
			return ends, true, end
		}
		i = end
	}
}

// FuzzRelayFrames: the WebSocket proxy reads only frame headers and
// passes frames through unchanged. What it writes is a prefix of what it
// read: every whole frame up to and including the first close frame, and
// of a frame cut short, the header and what payload came. Its counts
// agree.
func FuzzRelayFrames(f *testing.F) {
	f.Add([]byte{0x81, 0x05, 'h', 'e', 'l', 'l', 'o', 0x88, 0x02, 0x03, 0xe8})
	f.Add([]byte{0x81, 0x85, 1, 2, 3, 4, 'h' ^ 1, 'e' ^ 2, 'l' ^ 3, 'l' ^ 4, 'o' ^ 1})
	f.Add(append([]byte{0x82, 0x7e, 0x01, 0x00}, make([]byte, 256)...))
	f.Add([]byte{0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0x10, 1, 2})
	f.Add([]byte{0x01, 0x01, 'a', 0x80, 0x01, 'b', 0x89, 0x00, 0x88, 0x00, 0x81, 0x00})
	f.Add([]byte{0x81})
	f.Fuzz(func(t *testing.T, data []byte) {
		src := bufio.NewReader(bytes.NewReader(data))
		var out bytes.Buffer
		res := relayFrames(&out, src, src, nil)
		ends, sawClose, want := frameEnds(data)
		if !bytes.Equal(out.Bytes(), data[:want]) {
			t.Fatalf("relayed % x of % x, want the first %d bytes", out.Bytes(), data, want)
		}
		if res.sawClose != sawClose || res.frames != int64(len(ends)) || res.writeFailed {
			t.Fatalf("result %+v: %d frames, close %t", res, len(ends), sawClose)
		}
		midFrame := want > 0 && (len(ends) == 0 || ends[len(ends)-1] != want)
		if res.midFrame != midFrame {
			t.Fatalf("midFrame %t, want %t", res.midFrame, midFrame)
		}
		if !sawClose && !errors.Is(res.err, io.EOF) && !errors.Is(res.err, io.ErrUnexpectedEOF) {
			t.Fatalf("ended with %v", res.err)
		}
	})
}
