package daemon

import (
	"errors"
	"log/slog"

	"github.com/berth-dev/berth/internal/sandbox"
)

// openLinux opens the linux backend where the host allows it.
func openLinux(dataDir string, log *slog.Logger) (sandbox.Backend, error) {
	return nil, errors.New("linux backend not built yet")
}
