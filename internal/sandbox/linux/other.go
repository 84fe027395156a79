//go:build !linux

// Package linux is the sandbox backend built on Linux namespaces and
// cgroups. On other systems it reports itself unavailable.
package linux

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"

	"github.com/berth-dev/berth/internal/sandbox"
)

// Config configures the backend (see the Linux build for field docs).
type Config struct {
	RootDir        string
	CgroupParent   string
	HidePaths      []string
	DefaultNetwork sandbox.NetworkMode
	UserNamespace  bool
	UIDBase        uint32
	WarmInits      int
	EgressRange    netip.Prefix
	EgressDeny     []netip.Prefix
	EgressDNS      []netip.Addr
	Logger         *slog.Logger
}

// Backend is unavailable on this system.
type Backend struct{}

var _ sandbox.Backend = (*Backend)(nil)

// MaybeRunInit does nothing outside Linux.
func MaybeRunInit() {}

// Available reports that this system has no Linux namespaces.
func Available() error {
	return fmt.Errorf("linux sandbox needs Linux: %w", sandbox.ErrUnsupported)
}

// New fails outside Linux.
func New(Config) (*Backend, error) { return nil, Available() }

func (*Backend) Name() string { return "linux" }

func (*Backend) Start(context.Context, sandbox.Spec) (sandbox.Handle, error) {
	return nil, Available()
}

func (*Backend) Reap(context.Context) error { return nil }
func (*Backend) Close() error               { return nil }
