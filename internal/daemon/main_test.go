package daemon_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/berth-dev/berth/internal/sandbox/linux"
)

// TestMain lets the test binary serve as the linux sandbox's init step.
func TestMain(m *testing.M) {
	linux.MaybeRunInit()
	code := m.Run()
	if tutorialBin != "" {
		os.RemoveAll(filepath.Dir(tutorialBin))
	}
	os.Exit(code)
}
