package image

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/errdefs"
)

// readInRoot reads rel inside root, resolving symlinks as the image would
// see them (never into the host's own files). A missing file reads empty.
func readInRoot(root, rel string) (string, error) {
	dir, err := os.Open(root)
	if err != nil {
		return "", err
	}
	defer dir.Close()
	fd, err := unix.Openat2(int(dir.Fd()), rel, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENOENT) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read the image's /%s: %w", rel, err)
	}
	f := os.NewFile(uintptr(fd), rel)
	defer f.Close()
	var b strings.Builder
	if _, err := io.Copy(&b, io.LimitReader(f, 16<<20+1)); err != nil {
		return "", fmt.Errorf("read the image's /%s: %w", rel, err)
	}
	if b.Len() > 16<<20 {
		return "", fmt.Errorf("the image's /%s is over 16 MB: %w", rel, errdefs.ErrInvalidArgument)
	}
	return b.String(), nil
}
