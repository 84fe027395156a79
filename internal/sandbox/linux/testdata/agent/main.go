// Command agent is the linux backend's test agent: an HTTP server on $PORT
// whose POST /try runs one named attempt (often an escape attempt) and
// reports what the kernel said. It is built by the tests, never shipped.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

type request struct {
	Op   string   `json:"op"`
	Arg  string   `json:"arg"`
	Args []string `json:"args"`
	N    int64    `json:"n"`
}

type result struct {
	OK  bool   `json:"ok"`
	Err string `json:"err,omitempty"`
	Out string `json:"out,omitempty"`
}

var held [][]byte // memory kept alive by "alloc"

func main() {
	if os.Getenv("AGENT_MODE") == "ignore-term" {
		signal.Ignore(syscall.SIGTERM)
	}
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ping", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"status":"Healthy","time_of_last_update":%d}`, time.Now().Unix())
	})
	mux.HandleFunc("POST /try", func(w http.ResponseWriter, r *http.Request) {
		var req request
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		out, err := try(req)
		res := result{OK: err == nil, Out: out}
		if err != nil {
			res.Err = err.Error()
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(res)
	})
	l, err := net.Listen("tcp", ":"+port)
	if err != nil {
		fmt.Fprintln(os.Stderr, "listen:", err)
		os.Exit(1)
	}
	fmt.Fprintln(os.Stderr, "agent listening on", l.Addr())
	_ = http.Serve(l, mux)
}

func try(req request) (string, error) {
	switch req.Op {
	case "read":
		b, err := os.ReadFile(req.Arg)
		return string(b), err
	case "write":
		return "", os.WriteFile(req.Arg, []byte("pwned"), 0o644)
	case "ls":
		entries, err := os.ReadDir(req.Arg)
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		return strings.Join(names, "\n"), err
	case "kill":
		pid, _ := strconv.Atoi(req.Arg)
		return "", syscall.Kill(pid, syscall.SIGKILL)
	case "connect":
		// N is the timeout in milliseconds (default 1 s): a dropped SYN
		// only ever times out.
		timeout := time.Second
		if req.N > 0 {
			timeout = time.Duration(req.N) * time.Millisecond
		}
		c, err := net.DialTimeout("tcp", req.Arg, timeout)
		if err != nil {
			return "", err
		}
		c.Close()
		return "connected", nil
	case "dialread":
		// Connect and return the first line the server sends.
		c, err := net.DialTimeout("tcp", req.Arg, 5*time.Second)
		if err != nil {
			return "", err
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		return strings.TrimSpace(line), err
	case "udp":
		// Send one datagram; delivery is for the receiver to confirm.
		c, err := net.Dial("udp", req.Arg)
		if err != nil {
			return "", err
		}
		defer c.Close()
		_, err = c.Write([]byte("pwned"))
		return "", err
	case "addrs":
		// Every address on every interface, "name addr/len" per line.
		ifs, err := net.Interfaces()
		if err != nil {
			return "", err
		}
		var lines []string
		for _, ifc := range ifs {
			addrs, _ := ifc.Addrs()
			for _, a := range addrs {
				lines = append(lines, ifc.Name+" "+a.String())
			}
		}
		return strings.Join(lines, "\n"), nil
	case "sethostname":
		return "", syscall.Sethostname([]byte(req.Arg))
	case "hostname":
		return os.Hostname()
	case "mount":
		return "", syscall.Mount("tmpfs", req.Arg, "tmpfs", 0, "")
	case "remount-rw":
		return "", syscall.Mount("", req.Arg, "", syscall.MS_REMOUNT|syscall.MS_BIND, "")
	case "init_module":
		// An empty image: the kernel must refuse before parsing it.
		img := []byte{0}
		p := []byte("\x00")
		_, _, e := syscall.Syscall(syscall.SYS_INIT_MODULE, uintptr(unsafe.Pointer(&img[0])), 1, uintptr(unsafe.Pointer(&p[0])))
		return "", errnoErr(e)
	case "finit_module":
		f, err := os.Open("/dev/null")
		if err != nil {
			return "", err
		}
		defer f.Close()
		p := []byte("\x00")
		_, _, e := syscall.Syscall(313, f.Fd(), uintptr(unsafe.Pointer(&p[0])), 0)
		return "", errnoErr(e)
	case "ptrace":
		pid, _ := strconv.Atoi(req.Arg)
		return "", syscall.PtraceAttach(pid)
	case "unshare-user":
		_, _, e := syscall.RawSyscall(syscall.SYS_UNSHARE, syscall.CLONE_NEWUSER, 0, 0)
		return "", errnoErr(e)
	case "chroot":
		return "", syscall.Chroot(req.Arg)
	case "alloc":
		// Touch every page so the memory is really charged.
		for i := int64(0); i < req.N; i++ {
			b := make([]byte, 1<<20)
			for j := 0; j < len(b); j += 4096 {
				b[j] = 1
			}
			held = append(held, b)
		}
		return fmt.Sprint(len(held)), nil
	case "forkbomb":
		// Spawn sleepers until the kernel says no; report how many ran.
		n := 0
		var lastErr error
		var cmds []*exec.Cmd
		for i := int64(0); i < req.N; i++ {
			c := exec.Command("/bin/sleep", "30")
			if err := c.Start(); err != nil {
				lastErr = err
				break
			}
			cmds = append(cmds, c)
			n++
		}
		for _, c := range cmds {
			_ = c.Process.Kill()
			_ = c.Wait()
		}
		return strconv.Itoa(n), lastErr
	case "filldisk":
		f, err := os.Create(req.Arg)
		if err != nil {
			return "", err
		}
		defer f.Close()
		buf := make([]byte, 1<<20)
		var n int64
		for n < req.N<<20 {
			w, err := f.Write(buf)
			n += int64(w)
			if err != nil {
				return strconv.FormatInt(n, 10), err
			}
		}
		return strconv.FormatInt(n, 10), nil
	case "spawn":
		// A daemon that tries to outlive the session: new session, own group.
		c := exec.Command(req.Args[0], req.Args[1:]...)
		c.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := c.Start(); err != nil {
			return "", err
		}
		go func() { _ = c.Wait() }()
		return strconv.Itoa(c.Process.Pid), nil
	case "exec":
		out, err := exec.Command(req.Args[0], req.Args[1:]...).CombinedOutput()
		return string(out), err
	case "env":
		return os.Getenv(req.Arg), nil
	case "exit":
		go func() { time.Sleep(10 * time.Millisecond); os.Exit(int(req.N)) }()
		return "", nil
	}
	return "", errors.New("unknown op " + req.Op)
}

func errnoErr(e syscall.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}
