package image

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
)

// HostPlatform is the platform this berth runs natively, as OCI names it.
func HostPlatform() string {
	p := "linux/" + runtime.GOARCH
	if runtime.GOARCH == "arm" {
		p += "/v7"
	}
	return p
}

// qemuNames maps an OCI architecture to the name Debian's qemu-user-static
// registers its binfmt_misc handler under (qemu-<name>).
var qemuNames = map[string]string{
	"amd64": "x86_64", "386": "i386", "arm64": "aarch64", "arm": "arm",
	"ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64",
	"mips64le": "mips64el", "loong64": "loongarch64",
}

// binfmtDir is where the kernel lists binfmt_misc handlers.
const binfmtDir = "/proc/sys/fs/binfmt_misc"

// Emulation reports why this host cannot run platform's binaries under
// emulation, or nil when it can: a qemu-user handler for its architecture
// is registered with binfmt_misc, enabled, and with the F flag (the kernel
// opened the interpreter when it was registered, so it runs inside a
// sandbox whose root does not hold it).
func Emulation(platform string) error {
	osName, arch, _ := strings.Cut(platform, "/")
	arch, _, _ = strings.Cut(arch, "/")
	q, ok := qemuNames[arch]
	if osName != "linux" || !ok {
		return fmt.Errorf("no emulator is known for %s", platform)
	}
	status, err := os.ReadFile(binfmtDir + "/status")
	if err != nil {
		return fmt.Errorf("binfmt_misc is not mounted (%s): install qemu-user-static (Debian) to run %s images", binfmtDir, platform)
	}
	if !bytes.HasPrefix(status, []byte("enabled")) {
		return errors.New("binfmt_misc is disabled on this host")
	}
	h, err := os.ReadFile(binfmtDir + "/qemu-" + q)
	if err != nil {
		return fmt.Errorf("no qemu-%s binfmt_misc handler is registered: install qemu-user-static (Debian) to run %s images", q, platform)
	}
	if !bytes.HasPrefix(h, []byte("enabled")) {
		return fmt.Errorf("the qemu-%s binfmt_misc handler is disabled", q)
	}
	for line := range strings.SplitSeq(string(h), "\n") {
		if flags, ok := strings.CutPrefix(line, "flags:"); ok && strings.Contains(flags, "F") {
			return nil
		}
	}
	return fmt.Errorf("the qemu-%s binfmt_misc handler lacks the F flag, so sandboxes cannot reach its interpreter: register it fixed (Debian's qemu-user-static does)", q)
}
