package apptest

import (
	"bufio"
	"encoding/json"
	"io"
	"strings"

	"github.com/berth-dev/berth/api"
)

// EventReader reads Server-Sent Events from a stream.
type EventReader struct {
	sc *bufio.Scanner
}

// NewEventReader reads events from r.
func NewEventReader(r io.Reader) *EventReader {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), api.MaxPayloadBytes)
	return &EventReader{sc: sc}
}

// Next returns the data of the next event, its data lines joined with "\n"
// as the SSE format defines. Comments, other fields and events without data
// are skipped. At the end of the stream it returns io.EOF; a final event not
// terminated by a blank line is still returned.
func (r *EventReader) Next() (json.RawMessage, error) {
	var data []string
	for r.sc.Scan() {
		line := r.sc.Text()
		if line == "" {
			if data != nil {
				return json.RawMessage(strings.Join(data, "\n")), nil
			}
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		if field == "data" {
			data = append(data, strings.TrimPrefix(value, " "))
		}
	}
	if err := r.sc.Err(); err != nil {
		return nil, err
	}
	if data != nil {
		return json.RawMessage(strings.Join(data, "\n")), nil
	}
	return nil, io.EOF
}
