//go:build !linux

package storage

import "errors"

var errNoLoop = errors.New("session storage needs Linux loop devices")

func mountImage(image, mnt string) error { return errNoLoop }
func unmount(mnt string) error           { return nil }
func mountsUnder(dir string) []string    { return nil }
