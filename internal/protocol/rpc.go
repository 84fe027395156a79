package protocol

import (
	"bytes"
	"encoding/json"
	"io"
)

// peekLimit bounds how much of a JSON-RPC body berth reads ahead for the
// request's id and method; a larger request's errors answer id null.
const peekLimit = 64 << 10

// RPCRequest is what berth reads of a JSON-RPC request.
type RPCRequest struct {
	// ID is the request's id as sent (a number or a string); nil for a
	// notification, a batch, or a body berth could not read ahead.
	ID json.RawMessage
	// Method is the method called, "" when unknown.
	Method string
}

// PeekRPC reads the start of a JSON-RPC request body for its id and method
// and returns a reader that yields the whole body again.
func PeekRPC(body io.Reader) (RPCRequest, io.Reader, error) {
	head, err := io.ReadAll(io.LimitReader(body, peekLimit))
	if err != nil {
		return RPCRequest{}, nil, err
	}
	whole := io.MultiReader(bytes.NewReader(head), body)
	var req struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
	}
	if len(head) == peekLimit || json.Unmarshal(head, &req) != nil {
		return RPCRequest{}, whole, nil
	}
	if string(req.ID) == "null" {
		req.ID = nil
	}
	return RPCRequest{ID: req.ID, Method: req.Method}, whole, nil
}
