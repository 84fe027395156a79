//go:build linux

package linux

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// rtnl is a minimal rtnetlink client: just enough to create a veth pair,
// address it, bring it up, add a default route and delete it again. A
// netlink socket acts in the network namespace it was created in, whichever
// thread uses it later.
type rtnl struct {
	fd  int
	seq uint32
}

// vethInfoPeer is VETH_INFO_PEER from linux/veth.h (not in x/sys/unix).
const vethInfoPeer = 1

func openRtnl() (*rtnl, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("open rtnetlink: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind rtnetlink: %w", err)
	}
	return &rtnl{fd: fd}, nil
}

// openRtnlIn opens an rtnetlink socket inside the network namespace ns, after
// running prep on a thread switched into it (for per-namespace sysctls). If
// the thread cannot switch back it stays locked, and Go retires it.
func openRtnlIn(ns, home *os.File, prep func() error) (*rtnl, error) {
	type result struct {
		c   *rtnl
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
		var r result
		if r.err = prep(); r.err == nil {
			r.c, r.err = openRtnl()
		}
		if err := unix.Setns(int(home.Fd()), unix.CLONE_NEWNET); err != nil {
			if r.c != nil {
				r.c.Close()
			}
			ch <- result{err: fmt.Errorf("return to berth's network namespace: %w", err)}
			return
		}
		runtime.UnlockOSThread()
		ch <- r
	}()
	r := <-ch
	return r.c, r.err
}

func (c *rtnl) Close() error { return unix.Close(c.fd) }

// nlMsg builds one request: a header, a fixed struct, then attributes.
type nlMsg struct {
	b     []byte
	nests []int // offsets of open nested attributes
}

func newNlMsg(typ, flags uint16, fixed []byte) *nlMsg {
	m := &nlMsg{b: make([]byte, unix.SizeofNlMsghdr, 256)}
	binary.NativeEndian.PutUint16(m.b[4:], typ)
	binary.NativeEndian.PutUint16(m.b[6:], flags|unix.NLM_F_REQUEST|unix.NLM_F_ACK)
	m.b = append(m.b, fixed...)
	m.align()
	return m
}

func (m *nlMsg) align() {
	for len(m.b)%4 != 0 {
		m.b = append(m.b, 0)
	}
}

func (m *nlMsg) attr(typ uint16, data []byte) {
	var h [unix.SizeofRtAttr]byte
	binary.NativeEndian.PutUint16(h[0:], uint16(unix.SizeofRtAttr+len(data)))
	binary.NativeEndian.PutUint16(h[2:], typ)
	m.b = append(m.b, h[:]...)
	m.b = append(m.b, data...)
	m.align()
}

func (m *nlMsg) str(typ uint16, s string) { m.attr(typ, append([]byte(s), 0)) }

func (m *nlMsg) u32(typ uint16, v uint32) {
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], v)
	m.attr(typ, b[:])
}

// open starts a nested attribute; close ends the innermost one.
func (m *nlMsg) open(typ uint16) {
	m.nests = append(m.nests, len(m.b))
	m.attr(typ, nil)
}

func (m *nlMsg) close() {
	at := m.nests[len(m.nests)-1]
	m.nests = m.nests[:len(m.nests)-1]
	binary.NativeEndian.PutUint16(m.b[at:], uint16(len(m.b)-at))
}

// raw is the bytes of a fixed kernel struct.
func raw[T any](v *T) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(v)), unsafe.Sizeof(*v))
}

// do sends m and waits for the kernel's answer. It returns the payload of
// the first non-error reply (for GET requests) or nil after a plain ack.
func (c *rtnl) do(m *nlMsg) ([]byte, error) {
	c.seq++
	binary.NativeEndian.PutUint32(m.b[0:], uint32(len(m.b)))
	binary.NativeEndian.PutUint32(m.b[8:], c.seq)
	if err := unix.Sendto(c.fd, m.b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, err
	}
	buf := make([]byte, 1<<16)
	var reply []byte
	for {
		n, _, err := unix.Recvfrom(c.fd, buf, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for b := buf[:n]; len(b) >= unix.SizeofNlMsghdr; {
			l := int(binary.NativeEndian.Uint32(b[0:]))
			typ := binary.NativeEndian.Uint16(b[4:])
			seq := binary.NativeEndian.Uint32(b[8:])
			if l < unix.SizeofNlMsghdr || l > len(b) {
				return nil, errors.New("rtnetlink: truncated reply")
			}
			body := b[unix.SizeofNlMsghdr:l]
			if al := (l + 3) &^ 3; al < len(b) {
				b = b[al:]
			} else {
				b = nil
			}
			if seq != c.seq {
				continue
			}
			if typ == unix.NLMSG_ERROR {
				if len(body) < 4 {
					return nil, errors.New("rtnetlink: short error reply")
				}
				if e := int32(binary.NativeEndian.Uint32(body)); e != 0 {
					return nil, unix.Errno(-e)
				}
				return reply, nil // the ack
			}
			if reply == nil {
				reply = append([]byte(nil), body...)
			}
		}
	}
}

// linkIndex returns the index of the interface called name.
func (c *rtnl) linkIndex(name string) (int, error) {
	var ifi unix.IfInfomsg
	m := newNlMsg(unix.RTM_GETLINK, 0, raw(&ifi))
	m.str(unix.IFLA_IFNAME, name)
	reply, err := c.do(m)
	if err != nil {
		return 0, fmt.Errorf("look up link %s: %w", name, err)
	}
	if len(reply) < unix.SizeofIfInfomsg {
		return 0, fmt.Errorf("look up link %s: short reply", name)
	}
	return int(int32(binary.NativeEndian.Uint32(reply[4:]))), nil
}

// addVeth creates a veth pair: local stays in c's namespace, peer goes to
// the namespace peerNS. Both start down. EEXIST means a name is taken.
func (c *rtnl) addVeth(local, peer string, peerNS *os.File, mtu int) error {
	var ifi unix.IfInfomsg
	m := newNlMsg(unix.RTM_NEWLINK, unix.NLM_F_CREATE|unix.NLM_F_EXCL, raw(&ifi))
	m.str(unix.IFLA_IFNAME, local)
	if mtu > 0 {
		m.u32(unix.IFLA_MTU, uint32(mtu))
	}
	m.open(unix.IFLA_LINKINFO)
	m.str(unix.IFLA_INFO_KIND, "veth")
	m.open(unix.IFLA_INFO_DATA)
	m.open(vethInfoPeer)
	m.b = append(m.b, raw(&ifi)...) // the peer's own ifinfomsg
	m.str(unix.IFLA_IFNAME, peer)
	if mtu > 0 {
		m.u32(unix.IFLA_MTU, uint32(mtu))
	}
	m.u32(unix.IFLA_NET_NS_FD, uint32(peerNS.Fd()))
	m.close()
	m.close()
	m.close()
	if _, err := c.do(m); err != nil {
		return fmt.Errorf("create veth %s/%s: %w", local, peer, err)
	}
	return nil
}

// delLink deletes the interface called name (and a veth's peer with it).
func (c *rtnl) delLink(name string) error {
	var ifi unix.IfInfomsg
	m := newNlMsg(unix.RTM_DELLINK, 0, raw(&ifi))
	m.str(unix.IFLA_IFNAME, name)
	if _, err := c.do(m); err != nil {
		return fmt.Errorf("delete link %s: %w", name, err)
	}
	return nil
}

// linkUp brings interface index up.
func (c *rtnl) linkUp(index int) error {
	ifi := unix.IfInfomsg{Index: int32(index), Flags: unix.IFF_UP, Change: unix.IFF_UP}
	if _, err := c.do(newNlMsg(unix.RTM_NEWLINK, 0, raw(&ifi))); err != nil {
		return fmt.Errorf("bring link %d up: %w", index, err)
	}
	return nil
}

// addAddr gives interface index the IPv4 address p.
func (c *rtnl) addAddr(index int, p netip.Prefix) error {
	ifa := unix.IfAddrmsg{Family: unix.AF_INET, Prefixlen: uint8(p.Bits()), Index: uint32(index)}
	m := newNlMsg(unix.RTM_NEWADDR, unix.NLM_F_CREATE|unix.NLM_F_EXCL, raw(&ifa))
	a := p.Addr().As4()
	m.attr(unix.IFA_LOCAL, a[:])
	m.attr(unix.IFA_ADDRESS, a[:])
	if _, err := c.do(m); err != nil {
		return fmt.Errorf("add address %s: %w", p, err)
	}
	return nil
}

// addDefaultRoute routes everything via gw on interface index.
func (c *rtnl) addDefaultRoute(index int, gw netip.Addr) error {
	rtm := unix.RtMsg{
		Family: unix.AF_INET, Table: unix.RT_TABLE_MAIN, Protocol: unix.RTPROT_BOOT,
		Scope: unix.RT_SCOPE_UNIVERSE, Type: unix.RTN_UNICAST,
	}
	m := newNlMsg(unix.RTM_NEWROUTE, unix.NLM_F_CREATE|unix.NLM_F_EXCL, raw(&rtm))
	g := gw.As4()
	m.attr(unix.RTA_GATEWAY, g[:])
	m.u32(unix.RTA_OIF, uint32(index))
	if _, err := c.do(m); err != nil {
		return fmt.Errorf("add default route via %s: %w", gw, err)
	}
	return nil
}
