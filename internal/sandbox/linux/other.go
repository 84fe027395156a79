//go:build !linux

// Package linux is the sandbox backend built on Linux namespaces and
// cgroups. On other systems it reports itself unavailable.
package linux

import (
	"context"
	"fmt"

	"github.com/berth-dev/berth/internal/sandbox"
)

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

func (*Backend) Capabilities() sandbox.Capabilities { return capabilities("") }

func (*Backend) Start(context.Context, sandbox.Spec) (sandbox.Handle, error) {
	return nil, Available()
}

func (*Backend) Attach(context.Context, string) (sandbox.Handle, error) {
	return nil, Available()
}

func (*Backend) Reap(context.Context) error { return nil }
func (*Backend) Close() error               { return nil }
