//go:build !linux

package image

import (
	"errors"

	"github.com/berth-dev/berth/internal/errdefs"
)

// Images run only in the linux sandbox; elsewhere they cannot be unpacked.

func readInRoot(root, rel string) (string, error) {
	return "", errors.Join(errors.New("images need Linux"), errdefs.ErrInvalidArgument)
}
