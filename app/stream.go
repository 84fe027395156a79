package app

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
)

// Stream is a handler result sent as Server-Sent Events, the counterpart of
// a generator entrypoint in the Python SDK. The app answers 200 with
// Content-Type text/event-stream, then calls the Stream once, on the
// invocation's goroutine, with a send function:
//
//	return app.Stream(func(send func(event any) error) error {
//		for _, word := range words {
//			if err := send(map[string]string{"delta": word}); err != nil {
//				return err // the client has gone
//			}
//		}
//		return nil
//	}), nil
//
// Each send JSON-encodes event, writes `data: <json>\n\n` and flushes it to
// the client. send returns an error when the event cannot be encoded, when
// the client has disconnected (the handler's ctx is then cancelled too), or
// once the Stream has returned; the Stream should then stop. send is safe to
// call from several goroutines.
//
// If the Stream returns an error (or panics) while the client is still
// there, the app sends a last event, as the Python SDK does:
//
//	data: {"error":"<err>","error_type":"<type>","message":"An error occurred during streaming"}
//
// error_type is the result of an ErrorType() string method on the error
// chain, if any, and otherwise the error's Go type, such as "errors.errorString".
type Stream func(send func(event any) error) error

// StreamSeq adapts an iterator to a [Stream]: each value is sent as an event,
// and a non-nil error ends the stream with an error event.
func StreamSeq[T any](seq iter.Seq2[T, error]) Stream {
	return func(send func(event any) error) error {
		for v, err := range seq {
			if err != nil {
				return err
			}
			if err := send(v); err != nil {
				return err
			}
		}
		return nil
	}
}

// streamErrorEvent is the Python SDK's mid-stream error event.
type streamErrorEvent struct {
	Error     string `json:"error"`
	ErrorType string `json:"error_type"`
	Message   string `json:"message"`
}

// errStreamClosed is what send returns after the Stream has returned.
var errStreamClosed = errors.New("stream already finished")

// sseWriter writes events to one response.
type sseWriter struct {
	ctx context.Context
	w   http.ResponseWriter
	rc  *http.ResponseController

	// mu guards the fields that follow and serialises writes to w.
	mu     sync.Mutex
	gone   error // set once the client is unreachable
	closed bool  // set once the Stream has returned
	events int
}

func (s *sseWriter) send(event any) error {
	data, err := encodeJSON(event)
	if err != nil {
		return fmt.Errorf("encode event: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errStreamClosed
	}
	if s.gone != nil {
		return s.gone
	}
	if err := s.ctx.Err(); err != nil {
		s.gone = fmt.Errorf("client disconnected: %w", err)
		return s.gone
	}
	if err := s.writeLocked(data); err != nil {
		s.gone = fmt.Errorf("client disconnected: %w", err)
		return s.gone
	}
	s.events++
	return nil
}

func (s *sseWriter) writeLocked(data []byte) error {
	buf := make([]byte, 0, len(data)+8)
	buf = append(buf, "data: "...)
	buf = append(buf, data...)
	buf = append(buf, "\n\n"...)
	if _, err := s.w.Write(buf); err != nil {
		return err
	}
	return s.rc.Flush()
}

func (a *App) writeStream(ctx context.Context, w http.ResponseWriter, stream Stream, log *slog.Logger) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	s := &sseWriter{ctx: ctx, w: w, rc: http.NewResponseController(w)}
	// Flush the headers now so the caller sees the stream open before the
	// first event, however long that takes.
	_ = s.rc.Flush()

	err := callStream(stream, s.send)

	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if err == nil {
		return
	}
	if s.gone != nil || ctx.Err() != nil {
		log.Info("stream stopped: client disconnected", slog.Int("events", s.events), slog.Any("err", err))
		return
	}
	var pe *panicError
	if errors.As(err, &pe) {
		log.Error("stream panicked", slog.Any("panic", pe.value), slog.String("stack", string(pe.stack)))
	} else {
		log.Error("stream failed", slog.Int("events", s.events), slog.Any("err", err))
	}
	data, encErr := encodeJSON(streamErrorEvent{
		Error:     err.Error(),
		ErrorType: errorType(err),
		Message:   "An error occurred during streaming",
	})
	if encErr != nil {
		return // the event is all strings; cannot happen
	}
	_ = s.writeLocked(data) // the client may be gone; nothing more to do
}

// callStream runs stream, turning a panic into an error.
func callStream(stream Stream, send func(any) error) (err error) {
	if stream == nil {
		return nil
	}
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			err = &panicError{value: p, stack: debug.Stack()}
		}
	}()
	return stream(send)
}

// errorType names err for the error_type field of a stream error event.
func errorType(err error) string {
	var typed interface{ ErrorType() string }
	if errors.As(err, &typed) {
		return typed.ErrorType()
	}
	return strings.TrimPrefix(fmt.Sprintf("%T", err), "*")
}
