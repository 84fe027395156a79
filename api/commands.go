package api

import "strings"

// InvokeAgentRuntimeCommand: POST /runtimes/{arn}/commands?qualifier=Q with
// the session header and a CommandRequest body. The answer is an AWS event
// stream of chunk events (ContentTypeEventStream), each carrying exactly
// one member of a CommandChunk: contentStart first, contentDelta as output
// arrives, contentStop last. An error after the stream has begun is an
// exception message whose type is ErrorType.StreamName.

// PathCommands is the operation's path under /runtimes/{arn}/.
const PathCommands = "commands"

// Limits on a command, as AgentCore sets them.
const (
	MaxCommandLen = 65536
	// Command timeouts are whole seconds in [MinCommandTimeout,
	// MaxCommandTimeout]; DefaultCommandTimeout when left out.
	MinCommandTimeout     = 1
	MaxCommandTimeout     = 3600
	DefaultCommandTimeout = 300
	// MaxCommandEventBytes caps one event message, and MaxCommandStreamBytes
	// the whole stream; output past it stops the command.
	MaxCommandEventBytes  = 64 << 10
	MaxCommandStreamBytes = 100_000_000
)

// ContentTypeEventStream is the media type of an AWS event stream.
const ContentTypeEventStream = "application/vnd.amazon.eventstream"

// Event-stream headers and their values.
const (
	EventHeaderMessageType   = ":message-type"
	EventHeaderEventType     = ":event-type"
	EventHeaderExceptionType = ":exception-type"
	EventHeaderContentType   = ":content-type"

	MessageTypeEvent     = "event"
	MessageTypeException = "exception"
	EventTypeChunk       = "chunk"
)

// CommandRequest is InvokeAgentRuntimeCommand's body. Timeout is in
// seconds; nil means DefaultCommandTimeout.
type CommandRequest struct {
	Command string `json:"command"`
	Timeout *int   `json:"timeout,omitempty"`
}

// CommandChunk is one chunk event's payload: exactly one member is set.
type CommandChunk struct {
	ContentStart *ContentStart `json:"contentStart,omitempty"`
	ContentDelta *ContentDelta `json:"contentDelta,omitempty"`
	ContentStop  *ContentStop  `json:"contentStop,omitempty"`
}

// ContentStart opens a command's output.
type ContentStart struct{}

// ContentDelta carries output from one of the command's streams.
type ContentDelta struct {
	Stdout string `json:"stdout,omitempty"`
	Stderr string `json:"stderr,omitempty"`
}

// ContentStop ends a command's output with how the command ended.
type ContentStop struct {
	ExitCode int           `json:"exitCode"`
	Status   CommandStatus `json:"status"`
}

// CommandStatus says whether a command ran to its end.
type CommandStatus string

const (
	CommandCompleted CommandStatus = "COMPLETED"
	// CommandTimedOut: the command outlived its timeout and berth killed
	// it, with every process it started. Its exit code is then
	// ExitCodeTimedOut.
	CommandTimedOut CommandStatus = "TIMED_OUT"
)

// ExitCodeTimedOut is the exit code berth reports for a command it killed
// at its timeout: 124, as coreutils' timeout(1) exits. AgentCore leaves it
// undocumented.
const ExitCodeTimedOut = 124

// streamErrors are the exception members of the command stream's union;
// other error types travel as internalServerException.
var streamErrors = []ErrorType{ErrAccessDenied, ErrInternalServer, ErrResourceNotFound,
	ErrServiceQuota, ErrThrottling, ErrValidation, ErrRuntimeClient}

// StreamName is the :exception-type an error of type t carries in a
// command's event stream: its member name in the stream's union
// (validationException, runtimeClientError, ...).
func (t ErrorType) StreamName() string {
	for _, e := range streamErrors {
		if e == t {
			return strings.ToLower(string(t[:1])) + string(t[1:])
		}
	}
	return ErrInternalServer.StreamName()
}

// ErrorTypeOfStream is the error type an :exception-type names.
func ErrorTypeOfStream(name string) ErrorType {
	if name == "" {
		return ErrInternalServer
	}
	return ErrorType(strings.ToUpper(name[:1]) + name[1:])
}
