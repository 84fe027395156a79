package main

import "github.com/berth-dev/berth/internal/sandbox/linux"

// runChild dispatches re-exec'd helper steps: berth is its own sandbox init.
func runChild() { linux.MaybeRunInit() }
