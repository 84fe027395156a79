package app

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"net"
	"testing"
	"time"
	"unicode/utf8"
)

// fuzzConn is a connection whose peer sent fixed bytes; it keeps what the
// agent writes back.
type fuzzConn struct {
	r *bytes.Reader
	w bytes.Buffer
}

func (c *fuzzConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c *fuzzConn) Write(p []byte) (int, error)      { return c.w.Write(p) }
func (c *fuzzConn) Close() error                     { return nil }
func (c *fuzzConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *fuzzConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *fuzzConn) SetDeadline(time.Time) error      { return nil }
func (c *fuzzConn) SetReadDeadline(time.Time) error  { return nil }
func (c *fuzzConn) SetWriteDeadline(time.Time) error { return nil }

// clientFrames encodes a message as a client sends it: masked with key,
// in fragments of at most chunk bytes (0: one frame).
func clientFrames(op byte, payload []byte, chunk int, key [4]byte) []byte {
	if chunk <= 0 || chunk > len(payload) {
		chunk = max(len(payload), 1)
	}
	var out []byte
	for first := true; first || len(payload) > 0; first = false {
		n := min(chunk, len(payload))
		b0 := byte(0)
		if first {
			b0 = op
		}
		if n == len(payload) {
			b0 |= 0x80
		}
		out = append(out, b0)
		switch {
		case n <= 125:
			out = append(out, 0x80|byte(n))
		case n <= 0xffff:
			out = append(out, 0x80|126)
			out = binary.BigEndian.AppendUint16(out, uint16(n))
		default:
			out = append(out, 0x80|127)
			out = binary.BigEndian.AppendUint64(out, uint64(n))
		}
		out = append(out, key[:]...)
		for i, c := range payload[:n] {
			out = append(out, c^key[i%4])
		}
		payload = payload[n:]
	}
	return out
}

// FuzzWSReadFrames: the agent SDK's frame reader on what a client sends
// (berth relays client frames unchanged). A well-formed message comes out
// as it went in, whatever follows it; nothing the client sends delivers
// text that is not UTF-8; reading always ends in an error for a finite
// stream; and all the agent ever writes back is pongs and one close frame.
func FuzzWSReadFrames(f *testing.F) {
	closeFrame := clientFrames(opClose, []byte{0x03, 0xe8}, 0, [4]byte{1, 2, 3, 4})
	f.Add([]byte("hello"), uint8(0), uint32(0x01020304), true, closeFrame)
	f.Add([]byte("fragmented binary payload"), uint8(3), uint32(0), false, append(clientFrames(opPing, []byte("p"), 0, [4]byte{}), closeFrame...))
	f.Add([]byte{0xff, 0xfe}, uint8(1), uint32(7), true, []byte{})
	f.Add(bytes.Repeat([]byte("x"), 300), uint8(200), uint32(9), false, []byte{0x81, 0x05, 'h', 'e', 'l', 'l', 'o'}) // unmasked
	f.Add([]byte{}, uint8(0), uint32(0), true, []byte{0x80, 0x80, 0, 0, 0, 0})                                       // stray continuation
	f.Add([]byte("a"), uint8(0), uint32(0), false, []byte{0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, payload []byte, chunk uint8, key uint32, text bool, tail []byte) {
		const limit = 1 << 16
		if len(payload) > limit || len(tail) > limit {
			return
		}
		op := byte(opBinary)
		if text {
			op = opText
		}
		var k [4]byte
		binary.BigEndian.PutUint32(k[:], key)
		in := append(clientFrames(op, payload, int(chunk), k), tail...)
		fc := &fuzzConn{r: bytes.NewReader(in)}
		c := newWSConn(fc, bufio.NewReadWriter(bufio.NewReader(fc), bufio.NewWriter(fc)))
		c.SetReadLimit(limit)
		if err := c.readFrames(); err == nil {
			t.Fatal("reading a finite stream ended without an error")
		}
		total := 0
		for _, m := range c.inbox {
			total += len(m.data)
			if m.typ == MessageText && !utf8.Valid(m.data) {
				t.Fatalf("delivered text that is not UTF-8: %q", m.data)
			}
		}
		if total > len(in) {
			t.Fatalf("delivered %d bytes from %d", total, len(in))
		}
		if !text || utf8.Valid(payload) {
			if len(c.inbox) == 0 || c.inbox[0].typ != MessageType(op) || !bytes.Equal(c.inbox[0].data, payload) {
				t.Fatalf("sent %d bytes in fragments of %d; got %+v", len(payload), chunk, c.inbox)
			}
		} else if len(c.inbox) > 0 {
			t.Fatalf("a text message that is not UTF-8 was delivered")
		}
		// Back to the client: pongs, then at most one close frame, last.
		out := fc.w.Bytes()
		for len(out) > 0 {
			if len(out) < 2 || out[1]&0x80 != 0 || out[1] > 125 || len(out) < 2+int(out[1]) {
				t.Fatalf("wrote a malformed frame: % x", out)
			}
			frame := out[:2+int(out[1])]
			out = out[len(frame):]
			switch frame[0] {
			case 0x80 | opPong:
			case 0x80 | opClose:
				if len(out) > 0 {
					t.Fatalf("wrote after the close frame: % x", out)
				}
				if len(frame) >= 4 && !validCloseCode(CloseCode(binary.BigEndian.Uint16(frame[2:]))) {
					t.Fatalf("closed with code % x", frame[2:4])
				}
			default:
				t.Fatalf("wrote frame % x", frame)
			}
		}
	})
}
