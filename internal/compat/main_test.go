package compat_test

import (
	"os"
	"testing"

	"github.com/berth-dev/berth/internal/sandbox/linux"
)

// TestMain lets the test binary serve as the linux sandbox's init step.
func TestMain(m *testing.M) {
	linux.MaybeRunInit()
	os.Exit(m.Run())
}
