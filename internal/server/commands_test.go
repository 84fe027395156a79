package server

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws/protocol/eventstream"
	"github.com/berth-dev/berth/api"
)

// decodeEvents reads every message of an event stream.
func decodeEvents(t *testing.T, r io.Reader) []eventstream.Message {
	t.Helper()
	dec := eventstream.NewDecoder()
	var out []eventstream.Message
	for {
		m, err := dec.Decode(r, nil)
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("decode event %d: %v", len(out), err)
		}
		out = append(out, m)
	}
}

func TestOutputEventsStayWholeAndSmall(t *testing.T) {
	rec := httptest.NewRecorder()
	var capped bool
	es := &eventStream{w: rec, enc: eventstream.NewEncoder(), rc: http.NewResponseController(rec), limit: 1 << 30, over: func() { capped = true }}
	out := es.output(false)
	// A rune split across writes, then output that JSON escapes sixfold.
	out.Write([]byte("h\xc3"))
	out.Write([]byte("\xa9llo "))
	worst := bytes.Repeat([]byte{1}, 300_000)
	out.Write(worst)
	out.flush()
	var text strings.Builder
	for i, m := range decodeEvents(t, rec.Body) {
		size := 16 + len(m.Payload)
		for _, h := range m.Headers {
			size += 1 + len(h.Name) + 3 + len(h.Value.String())
		}
		if size > api.MaxCommandEventBytes {
			t.Fatalf("event %d is %d bytes, over %d", i, size, api.MaxCommandEventBytes)
		}
		if got := m.Headers.Get(api.EventHeaderEventType).String(); got != api.EventTypeChunk {
			t.Fatalf("event type %q", got)
		}
		var c api.CommandChunk
		if err := json.Unmarshal(m.Payload, &c); err != nil || c.ContentDelta == nil {
			t.Fatalf("event %d: %s (%v)", i, m.Payload, err)
		}
		if !utf8.ValidString(c.ContentDelta.Stdout) {
			t.Fatalf("event %d is not valid UTF-8", i)
		}
		text.WriteString(c.ContentDelta.Stdout)
	}
	if want := "héllo " + string(worst); text.String() != want || capped {
		t.Fatalf("got %d bytes (capped %v), want %d", text.Len(), capped, len(want))
	}
}

func TestOutputCapStopsTheStream(t *testing.T) {
	rec := httptest.NewRecorder()
	overs := 0
	es := &eventStream{w: rec, enc: eventstream.NewEncoder(), rc: http.NewResponseController(rec), limit: 10, over: func() { overs++ }}
	out := es.output(true)
	out.Write([]byte("12345"))
	out.Write([]byte("67890"))
	out.Write([]byte("x"))
	out.Write([]byte("y"))
	var got string
	for _, m := range decodeEvents(t, rec.Body) {
		var c api.CommandChunk
		json.Unmarshal(m.Payload, &c)
		got += c.ContentDelta.Stderr
	}
	if got != "1234567890" || overs != 1 {
		t.Fatalf("sent %q, over called %d times", got, overs)
	}
}
