package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/mattn/go-isatty"
)

// isTerminal reports whether rw (a reader or writer) is a terminal: progress and colours go
// only there, never into a pipe or a file.
func isTerminal(rw any) bool {
	f, ok := rw.(*os.File)
	return ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()))
}

// progressDelay is how long a wait lasts before it gets a spinner: a
// quick answer shows nothing.
const progressDelay = time.Second

// progress shows a spinner with msg and the time waited on w until its
// stop is called, after progressDelay, and only if show. stop erases the
// line and waits for the spinner's goroutine.
func progress(w io.Writer, show bool, msg string) (stop func()) {
	if !show {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		start := time.Now()
		delay := time.NewTimer(progressDelay)
		defer delay.Stop()
		select {
		case <-done:
			return
		case <-delay.C:
		}
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		frames := []rune("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏")
		for i := 0; ; i++ {
			fmt.Fprintf(w, "\r%c %s (%ds)", frames[i%len(frames)], msg, int(time.Since(start).Seconds()))
			select {
			case <-done:
				fmt.Fprint(w, "\r\033[K")
				return
			case <-tick.C:
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(done)
			wg.Wait()
		})
	}
}
