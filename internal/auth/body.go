package auth

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"

	"github.com/berth-dev/berth/api"
)

// A signature whose payload hash the client did not send covers the body:
// berth reads the body whole, hashes it, and only then lets the request
// on, so no agent ever sees a payload whose signature was not checked.
// Up to MemoryBody bytes stay in memory; larger bodies (up to the payload
// limit) are spooled to a file under the data dir, deleted when the
// request is done. A client that sends X-Amz-Content-Sha256 (JS v3 does)
// keeps its stream: the hash is checked as the body passes, and a body
// that does not match fails its last read, so the agent never gets it
// whole.

// MemoryBody is the largest body held in memory to hash it.
const MemoryBody = 1 << 20

// readBody reads r's body whole, replaces it with a replay of what was
// read, and returns its SHA-256 in hex.
func (v *sigv4Verifier) readBody(r *http.Request) (string, error) {
	h := sha256.New()
	if r.Body == nil || r.Body == http.NoBody {
		return hex.EncodeToString(h.Sum(nil)), nil
	}
	limit := v.maxBody
	if limit <= 0 {
		limit = api.MaxPayloadBytes
	}
	var mem bytes.Buffer
	n, err := io.Copy(io.MultiWriter(h, &mem), io.LimitReader(r.Body, min(limit+1, MemoryBody+1)))
	if err != nil {
		return "", fmt.Errorf("read request body: %w", err)
	}
	if n <= MemoryBody {
		r.Body = io.NopCloser(&mem)
		return hex.EncodeToString(h.Sum(nil)), nil
	}
	if n > limit {
		return "", &http.MaxBytesError{Limit: limit}
	}
	f, err := os.CreateTemp(v.spoolDir, "body-*")
	if err != nil {
		return "", fmt.Errorf("spool request body: %w", err)
	}
	sp := &spooled{File: f}
	ok := false
	defer func() {
		if !ok {
			sp.Close()
		}
	}()
	if _, err := f.Write(mem.Bytes()); err != nil {
		return "", fmt.Errorf("spool request body: %w", err)
	}
	rest, err := io.Copy(io.MultiWriter(h, f), io.LimitReader(r.Body, limit+1-n))
	if err != nil {
		return "", fmt.Errorf("spool request body: %w", err)
	}
	if n+rest > limit {
		return "", &http.MaxBytesError{Limit: limit}
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", fmt.Errorf("spool request body: %w", err)
	}
	ok = true
	r.Body = sp
	return hex.EncodeToString(h.Sum(nil)), nil
}

// spooled is a body replayed from a temporary file, removed on Close.
type spooled struct {
	*os.File
	closed bool
}

func (s *spooled) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	s.File.Close()
	return os.Remove(s.Name())
}

// ErrPayloadHash is the error a body fails with when it does not match
// its X-Amz-Content-Sha256.
var ErrPayloadHash = &Error{Type: api.ErrInvalidSignature,
	Msg: "The provided 'x-amz-content-sha256' header does not match what was computed."}

// hashCheck passes a body through, hashing it. It looks one byte ahead
// so that the read that would hand over a body's last bytes checks the
// hash first and, on a mismatch, fails instead: no reader ever sees the
// whole of a body that does not match its signature.
type hashCheck struct {
	body io.Closer
	r    *bufio.Reader
	h    hash.Hash
	want string
	err  error
}

func newHashCheck(body io.ReadCloser, want string) io.ReadCloser {
	if body == nil {
		body = http.NoBody
	}
	return &hashCheck{body: body, r: bufio.NewReaderSize(body, 32<<10), h: sha256.New(), want: want}
}

func (c *hashCheck) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.r.Read(p)
	c.h.Write(p[:n])
	if err == nil {
		_, err = c.r.Peek(1)
	}
	if errors.Is(err, io.EOF) {
		if hex.EncodeToString(c.h.Sum(nil)) != c.want {
			c.err = ErrPayloadHash
			return 0, c.err
		}
		c.err = io.EOF
		if n > 0 {
			return n, nil
		}
		return 0, io.EOF
	}
	if err != nil {
		c.err = err
		if n > 0 {
			return n, nil
		}
	}
	return n, err
}

func (c *hashCheck) Close() error { return c.body.Close() }
