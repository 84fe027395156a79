package main

// runChild dispatches re-exec'd helper steps (the linux sandbox init).
func runChild() {}
