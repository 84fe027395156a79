//go:build linux

package linux

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/sandbox"
)

// handle is one running linux sandbox. Its wait goroutine, started by
// Backend.Start, is the only writer of exit and cleanupErr and closes done
// when the tree has exited and every resource is gone.
type handle struct {
	b    *Backend
	name string
	addr string
	port int // host network only: the loopback port reserved in b.ports
	// agentPort is the agent's port in the sandbox's own network.
	agentPort int
	mode      sandbox.NetworkMode
	log       *slog.Logger
	dir       string

	p       *initProc     // the init serving this sandbox; owns cgroups, netns, veth
	status  *bufio.Reader // over p.status, once the init is taken
	madeDir bool
	// exitFile is the init's exit report, read by an attached handle
	// (which has no status pipe).
	exitFile *os.File
	// forkMu makes Exec's forks one at a time: each moves the init into
	// its command's cgroup for the fork.
	forkMu sync.Mutex

	done chan struct{}
	// mu guards the fields that follow; they are final once done is closed.
	mu         sync.Mutex
	exit       sandbox.ExitStatus
	cleanupErr error
}

var (
	_ sandbox.Handle        = (*handle)(nil)
	_ sandbox.StatsReporter = (*handle)(nil)
)

func (h *handle) ID() string            { return h.name }
func (h *handle) Addr() string          { return h.addr }
func (h *handle) Done() <-chan struct{} { return h.done }

func (h *handle) Exit() sandbox.ExitStatus {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.exit
}

// Stats implements sandbox.StatsReporter from the sandbox's cgroups.
func (h *handle) Stats() (sandbox.Stats, error) {
	select {
	case <-h.done:
		return sandbox.Stats{}, fmt.Errorf("sandbox %s stats: sandbox has exited", h.name)
	default:
	}
	s, err := h.p.cg.Stats()
	if err != nil {
		return s, fmt.Errorf("sandbox %s stats: %w", h.name, err)
	}
	return s, nil
}

// wait is the handle's one goroutine.
func (h *handle) wait() {
	var st sandbox.ExitStatus
	if h.p.cmd != nil {
		st = h.waitChild()
	} else {
		st = h.waitAttached()
	}
	err := h.cleanup()
	if err != nil {
		h.log.Warn("sandbox cleanup", "err", err)
	}
	h.log.Debug("sandbox exited", "exit", st.String())
	h.mu.Lock()
	h.exit, h.cleanupErr = st, err
	h.mu.Unlock()
	close(h.done)
}

// waitAttached waits for an init that is not our child, and reads how its
// agent ended from the exit file.
func (h *handle) waitAttached() sandbox.ExitStatus {
	h.p.proc.Wait()
	st := sandbox.ExitStatus{Code: -1, Unknown: true}
	if h.exitFile != nil {
		defer h.exitFile.Close()
		var m statusMsg
		if err := json.NewDecoder(h.exitFile).Decode(&m); err == nil && m.Exited {
			st = sandbox.ExitStatus{Code: m.Code, Signal: m.Signal}
		}
	}
	if (st.Unknown || st.Signal == unix.SignalName(syscall.SIGKILL)) && h.p.cg.OOMKilled() {
		st = sandbox.ExitStatus{Code: -1, Signal: unix.SignalName(syscall.SIGKILL), OOMKilled: true}
	}
	return st
}

// waitChild reads the init's status pipe until it closes, and reaps it.
func (h *handle) waitChild() sandbox.ExitStatus {
	var agentExit *statusMsg
	for {
		m, err := readStatus(h.status)
		if err != nil {
			break // EOF: the init has exited (or was killed)
		}
		if m.Exited {
			agentExit = &m
		}
	}
	cmd := h.p.cmd
	werr := cmd.Wait()
	h.p.status.Close()

	var st sandbox.ExitStatus
	switch {
	case agentExit != nil:
		st = sandbox.ExitStatus{Code: agentExit.Code, Signal: agentExit.Signal}
	default:
		// The init itself was killed (Stop's SIGKILL, or the OOM killer
		// picked it); its pid namespace died with it.
		st.Code = cmd.ProcessState.ExitCode()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			st.Code, st.Signal = -1, unix.SignalName(ws.Signal())
		} else if werr != nil && cmd.ProcessState == nil {
			st.Code = -1
		}
	}
	// A SIGKILL with OOM kills recorded in the memory cgroup is the OOM
	// killer's work, whichever process it chose.
	if st.Signal == unix.SignalName(syscall.SIGKILL) && h.p.cg.OOMKilled() {
		st.OOMKilled = true
	}
	return st
}

// cleanup kills anything left in the cgroups and removes the cgroups, the
// netns reference, the veth and the directory. It runs once per handle:
// from wait, or from a failed Start.
func (h *handle) cleanup() error {
	var errs []error
	if h.p != nil {
		if err := h.p.release(); err != nil {
			errs = append(errs, err)
		}
	}
	if h.madeDir {
		detachMountsUnder(h.dir)
		if err := removeDir(h.dir); err != nil {
			errs = append(errs, err)
		}
	}
	h.b.mu.Lock()
	if h.b.live[h.name] == h {
		delete(h.b.live, h.name)
	}
	h.b.mu.Unlock()
	if h.port != 0 {
		h.b.ports.Release(h.port)
	}
	return errors.Join(errs...)
}

// Stop implements sandbox.Handle. SIGTERM goes to the init, which forwards
// it to the agent; after grace the init is SIGKILLed, which kills every
// process in its pid namespace.
func (h *handle) Stop(ctx context.Context, grace time.Duration) error {
	select {
	case <-h.done:
		return h.stopErr()
	default:
	}
	h.p.signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-h.done:
		return h.stopErr()
	case <-t.C:
	case <-ctx.Done():
	}
	h.p.signal(syscall.SIGKILL)
	// Teardown must finish even if the caller has given up.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	select {
	case <-h.done:
		return h.stopErr()
	case <-wctx.Done():
		return fmt.Errorf("stop sandbox %s: tree did not exit: %w", h.name, wctx.Err())
	}
}

func (h *handle) stopErr() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cleanupErr != nil {
		return fmt.Errorf("stop sandbox %s: %w", h.name, h.cleanupErr)
	}
	return nil
}

// DialContext implements sandbox.Handle: the socket is created inside the
// sandbox's network namespace, so the agent's port is reachable only this way.
func (h *handle) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if h.mode == sandbox.NetworkHost {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	h.p.nsMu.RLock()
	defer h.p.nsMu.RUnlock()
	if h.p.netns == nil {
		return nil, fmt.Errorf("dial sandbox %s: sandbox has exited", h.name)
	}
	return dialInNetns(ctx, h.p.netns, h.b.hostNet, network, addr)
}

// dialInNetns dials from a thread switched into ns. A socket stays in the
// namespace it was created in, so the thread switches back as soon as the
// dial returns. If switching back fails the goroutine exits still locked,
// and Go retires the tainted thread.
func dialInNetns(ctx context.Context, ns, home *os.File, network, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("enter sandbox network namespace: %w", err)}
			return
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		if serr := unix.Setns(int(home.Fd()), unix.CLONE_NEWNET); serr != nil {
			ch <- result{c, err}
			return
		}
		runtime.UnlockOSThread()
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}
