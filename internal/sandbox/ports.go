package sandbox

import (
	"errors"
	"fmt"
	"net"
	"sync"
)

// Ports hands out free loopback ports to sandboxes that share the host
// network. A port is free when the kernel offers it; the kernel may offer
// it again once the probe closes, so ports held by live sandboxes are
// skipped and two agents never share one. Another program may still take a
// port before the agent binds it; that agent then fails to start. The zero
// value is ready to use.
type Ports struct {
	// mu guards held.
	mu   sync.Mutex
	held map[int]bool
}

// Take reserves a free loopback port until Release.
func (p *Ports) Take() (int, error) {
	for range 32 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("pick loopback port: %w", err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		_ = ln.Close()
		if p.hold(port) {
			return port, nil
		}
	}
	return 0, errors.New("pick loopback port: every port offered is held by a sandbox")
}

// Hold reserves a known port (one a reattached sandbox already listens
// on); false if it is held already.
func (p *Ports) Hold(port int) bool { return p.hold(port) }

func (p *Ports) hold(port int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.held[port] {
		return false
	}
	if p.held == nil {
		p.held = map[int]bool{}
	}
	p.held[port] = true
	return true
}

// Release frees a port Take or Hold reserved.
func (p *Ports) Release(port int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.held, port)
}
