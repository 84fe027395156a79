package sandboxtest

import (
	"bytes"
	"io"
	"os"
	"sync"
	"testing"
	"time"
)

// Output returns a pipe's write end for sandbox.Spec.Output and copies
// what the sandbox writes to it into memory, as berth's session manager
// copies it into the session's log; Captured reads it. At cleanup, after
// the sandbox's own cleanup, the test's write end closes, and the test
// fails if a process still holds the other end 10 s later: a backend must
// keep no copy and leave no process behind.
func Output(t testing.TB) *os.File {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	o := &output{w: w, eof: make(chan struct{})}
	outputs.Store(w, o)
	go func() {
		defer close(o.eof)
		defer r.Close()
		io.Copy(o, r)
	}()
	t.Cleanup(func() {
		o.closeWriter()
		select {
		case <-o.eof:
		case <-time.After(10 * time.Second):
			t.Errorf("a process still holds the sandbox's output 10s after the test")
		}
		outputs.Delete(w)
	})
	return w
}

// Captured is what the sandbox given out (from Output) has written.
func Captured(out *os.File) string {
	if o, ok := outputs.Load(out); ok {
		return o.(*output).String()
	}
	return "(no output captured)"
}

// outputsClosed closes the test's write end of out and reports whether the
// read end sees its end within timeout: whether every process of the
// sandbox, and the backend, let go of it.
func outputClosed(out *os.File, timeout time.Duration) bool {
	v, ok := outputs.Load(out)
	if !ok {
		return false
	}
	o := v.(*output)
	o.closeWriter()
	select {
	case <-o.eof:
		return true
	case <-time.After(timeout):
		return false
	}
}

// outputs maps each write end Output gave out to what it captured.
var outputs sync.Map // *os.File → *output

type output struct {
	w    *os.File
	once sync.Once
	eof  chan struct{} // closed when the read end sees its end

	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (o *output) closeWriter() { o.once.Do(func() { o.w.Close() }) }

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.Write(p)
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}
