package daemon

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/berth-dev/berth/internal/sandbox"
	"github.com/berth-dev/berth/internal/sandbox/linux"
)

// openLinux opens the linux backend where the host allows it. Its cgroups
// sit under a parent named for the data dir, so two berth instances on one
// host never reap each other's sandboxes.
func openLinux(dataDir string, userNS bool, log *slog.Logger) (sandbox.Backend, error) {
	if err := linux.Available(); err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte(dataDir))
	b, err := linux.New(linux.Config{
		RootDir:       filepath.Join(dataDir, "sandboxes", "linux"),
		CgroupParent:  "berth-" + hex.EncodeToString(sum[:4]),
		HidePaths:     []string{dataDir},
		UserNamespace: userNS,
		Logger:        log,
	})
	if err != nil {
		return nil, fmt.Errorf("open linux sandbox backend: %w", err)
	}
	return b, nil
}
