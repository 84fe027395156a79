package api

import "time"

// Session is one session incarnation as berth's session API shows it.
// AgentCore has no such API; this is berth's own.
type Session struct {
	// ID names this incarnation; the same SessionID reused after an end
	// gets a new ID.
	ID           string    `json:"id"`
	RuntimeID    string    `json:"runtimeId"`
	Runtime      string    `json:"runtime"` // the runtime's name
	Endpoint     string    `json:"endpoint"`
	SessionID    string    `json:"sessionId"`
	Version      int       `json:"version"`
	UserID       string    `json:"userId,omitempty"`
	State        string    `json:"state"`
	EndReason    string    `json:"endReason,omitempty"`
	EndDetail    string    `json:"endDetail,omitempty"`
	Backend      string    `json:"backend"`
	SandboxID    string    `json:"sandboxId,omitempty"`
	CreatedAt    time.Time `json:"createdAt"`
	LastActiveAt time.Time `json:"lastActiveAt"`
	ExpiresAt    time.Time `json:"expiresAt,omitzero"`
	EndedAt      time.Time `json:"endedAt,omitzero"`
	Invocations  int64     `json:"invocations"`
	// Live-only fields.
	InFlight int            `json:"inFlight,omitempty"`
	Busy     bool           `json:"busy,omitempty"`
	Usage    *ResourceUsage `json:"usage,omitempty"`
	LogTail  []string       `json:"logTail,omitempty"`

	// Image is the container image an image runtime's session runs
	// (shown by GET of one session).
	Image *SessionImage `json:"image,omitempty"`
}

// SessionImage is the image a session runs: the reference its version
// was made from and the digest it pinned; Emulated says the host runs its
// platform under qemu-user.
type SessionImage struct {
	Ref      string `json:"ref"`
	Digest   string `json:"digest"`
	Platform string `json:"platform,omitempty"`
	Emulated bool   `json:"emulated,omitempty"`
}

// ResourceUsage is a live sandbox's resource use, from its cgroup where
// the backend has one.
type ResourceUsage struct {
	MemoryBytes int64   `json:"memoryBytes"`
	CPUSeconds  float64 `json:"cpuSeconds"`
	Pids        int64   `json:"pids"`
}

// SessionList is one page of sessions, newest first.
type SessionList struct {
	Sessions   []Session `json:"sessions"`
	NextCursor string    `json:"nextCursor,omitempty"`
}

// Paths of berth's own API.
const (
	PathSessions = "/berth/v1/sessions"
)
