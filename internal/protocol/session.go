package protocol

import (
	"crypto/sha256"
	"encoding/hex"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/google/uuid"
)

// Session is the session a call names.
type Session struct {
	// ID is the runtime session ID berth keys the session by.
	ID string
	// Wire is the protocol's own session ID as client and server speak it
	// (MCP's Mcp-Session-Id); "" for protocols without one.
	Wire string
	// Chosen: the client named no session of the protocol's own, so berth
	// chose its ID (made one, or took the runtime session's).
	Chosen bool
}

// maxWireID is AgentCore's cap on Mcp-Session-Id.
const maxWireID = 1024

// Session reads the session a call names. runtimeSession is the AgentCore
// session header's value, already checked ("" when absent).
//
// On protocols without a session header of their own, the runtime session
// is the session, and berth makes one when the client sent none. On MCP,
// Mcp-Session-Id is the stickiness key: the client's if it sent one, else
// the runtime session's, else one berth makes; the key is the ID itself
// when it is a valid runtime session ID, and a digest of it otherwise (a
// server may mint shorter IDs, or use other characters).
func (a *Adapter) Session(wire, runtimeSession string) (Session, error) {
	if a.SessionHeader == "" {
		if runtimeSession != "" {
			return Session{ID: runtimeSession}, nil
		}
		return Session{ID: uuid.NewString(), Chosen: true}, nil
	}
	if wire != "" {
		if err := checkWireID(a.SessionHeader, wire); err != nil {
			return Session{}, err
		}
		return Session{ID: Key(wire), Wire: wire}, nil
	}
	if runtimeSession != "" {
		return Session{ID: runtimeSession, Wire: runtimeSession, Chosen: true}, nil
	}
	id := uuid.NewString()
	return Session{ID: id, Wire: id, Chosen: true}, nil
}

// Key is the runtime session ID a wire session ID is keyed by.
func Key(wire string) string {
	if api.ValidSessionID(wire) {
		return wire
	}
	sum := sha256.Sum256([]byte(wire))
	return "wire-" + hex.EncodeToString(sum[:])
}

// checkWireID refuses what no header value may carry: AgentCore takes 1 to
// 1024 characters, and the MCP specification visible ASCII only.
func checkWireID(header, id string) error {
	if len(id) > maxWireID {
		return errdefs.Field(header, "%s is %d characters; the limit is %d", header, len(id), maxWireID)
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x21 || id[i] > 0x7e {
			return errdefs.Field(header, "%s must be visible ASCII characters", header)
		}
	}
	return nil
}

// ForwardWire is the protocol session ID the agent sees on a call, given
// the one it minted itself ("" if none):
//   - on MCP's initialize, none: a new MCP session begins, and a stateful
//     server mints its own ID (and refuses one it does not know; the Go SDK
//     answers 404);
//   - the agent's own ID, once it minted one: berth translates the
//     client's ID to it;
//   - none on a server/discover (protocol 2026-07-28) berth chose the ID
//     for, for the same reason as initialize;
//   - otherwise the client's ID, or the one berth made for it.
func (a *Adapter) ForwardWire(s Session, method, minted string) string {
	switch {
	case s.Wire == "" || method == "initialize":
		return ""
	case minted != "":
		return minted
	case s.Chosen && method == "server/discover":
		return ""
	}
	return s.Wire
}
