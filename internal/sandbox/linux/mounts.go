//go:build linux

package linux

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"golang.org/x/sys/unix"
)

// The sandbox's filesystem is assembled on NewRoot in two phases, inside the
// init's own mount namespace:
//
//	/            the host root, bound read-only (nosuid)
//	/dev         tmpfs with null, zero, full, random, urandom, tty, shm, pts
//	/proc        this pid namespace's proc; /proc/sys and friends read-only
//	/sys         a fresh read-only sysfs (own netns), else host's with cgroups hidden
//	Hide paths   empty tmpfs (read-only once the binds are in)
//
// are the same for every session and are done while the init waits in the
// pool (prepareRoot);
//
//	/tmp         private tmpfs capped at TmpBytes; $HOME is /tmp/home
//	Binds        the code dir, the agent binary, runtime mounts, resolv.conf
//
// depend on the session (finishRoot), which then pivots into the result.

// prepareRoot does the session-independent mounts and returns the hiding
// tmpfs mounts, which finishRoot makes read-only.
func prepareRoot(cfg *warmConfig) ([]string, error) {
	// Nothing below may propagate back to the host.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return nil, fmt.Errorf("make mounts private: %w", err)
	}
	nr := cfg.NewRoot
	if err := unix.Mount("/", nr, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return nil, fmt.Errorf("bind host root: %w", err)
	}
	if err := setReadOnly(nr, true, unix.MOUNT_ATTR_NOSUID); err != nil {
		return nil, fmt.Errorf("make host root read-only: %w", err)
	}
	if err := setupDev(nr); err != nil {
		return nil, err
	}
	if err := setupProc(nr); err != nil {
		return nil, err
	}
	if err := setupSys(nr, cfg.OwnNet); err != nil {
		return nil, err
	}
	var hidden []string
	for _, h := range hideOrder(cfg.Hide) {
		// /tmp is replaced whole later.
		if within(h, sandboxTmp) {
			continue
		}
		ok, err := hide(filepath.Join(nr, h))
		if err != nil {
			return nil, fmt.Errorf("hide %s: %w", h, err)
		}
		if ok {
			hidden = append(hidden, filepath.Join(nr, h))
		}
	}
	return hidden, nil
}

// hideOrder sorts hide paths parents first: once a parent is hidden its
// children no longer exist, so hide skips them.
func hideOrder(paths []string) []string {
	out := slices.Clone(paths)
	slices.Sort(out)
	return out
}

// hide covers the directory at p with an empty tmpfs, or the file at p with
// /dev/null, writable for now (mount points for later binds may go in it).
// Nothing at p, or a symlink, is nothing to hide: false.
func hide(p string) (bool, error) {
	fi, err := os.Lstat(p)
	if err != nil || fi.Mode()&os.ModeSymlink != 0 {
		return false, nil
	}
	if fi.IsDir() {
		err = unix.Mount("tmpfs", p, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "size=64k,mode=0755")
	} else {
		err = unix.Mount("/dev/null", p, "", unix.MS_BIND, "")
	}
	if err != nil {
		return false, err
	}
	return true, nil
}

// rehide hides again, below a bind's target, the hidden host paths that lie
// strictly inside its source: a bind of the code dir must not show berth's
// data dir in it. Mounts the recursive bind copied there (the new root
// itself, when RootDir is inside the source) are detached first. It returns
// the new hiding mounts.
func rehide(source, target string, hidePaths []string) ([]string, error) {
	var out []string
	for _, h := range hideOrder(hidePaths) {
		if h == source || !within(h, source) {
			continue
		}
		rel, err := filepath.Rel(source, h)
		if err != nil {
			continue
		}
		p := filepath.Join(target, rel)
		detachMountsUnder(p)
		ok, err := hide(p)
		if err != nil {
			return nil, fmt.Errorf("hide %s inside bind of %s: %w", h, source, err)
		}
		if ok {
			out = append(out, p)
		}
	}
	return out, nil
}

// finishRoot does the session's own mounts and pivots into the new root.
// hidden are prepareRoot's hiding mounts, hidePaths the host paths they hide.
func finishRoot(nr string, hidden, hidePaths []string, cfg *sessionConfig) error {
	tmpOpts := "mode=1777"
	if cfg.TmpBytes > 0 {
		tmpOpts += ",size=" + strconv.FormatInt(cfg.TmpBytes, 10)
	}
	if cfg.Image != nil {
		root, err := imageRoot(nr, tmpOpts, cfg)
		if err != nil {
			return err
		}
		// The host's root, with its hiding mounts, is left behind.
		nr, hidden, hidePaths = root, nil, nil
	}
	at := func(p string) string { return filepath.Join(nr, p) }
	if cfg.Image == nil {
		if err := unix.Mount("tmpfs", at(sandboxTmp), "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, tmpOpts); err != nil {
			return fmt.Errorf("mount /tmp: %w", err)
		}
		if err := os.Mkdir(at(sandboxHome), 0o700); err != nil {
			return fmt.Errorf("create home: %w", err)
		}
	}
	if err := os.Mkdir(at(sandboxShm), 0o777); err != nil {
		return fmt.Errorf("create shm dir: %w", err)
	}
	if err := os.Chmod(at(sandboxShm), 0o1777); err != nil {
		return fmt.Errorf("create shm dir: %w", err)
	}
	for _, b := range cfg.Binds {
		target := at(b.Target)
		if b.Resolve {
			target = resolveIn(nr, b.Target)
		}
		if err := bind(b.Source, target, b.ReadOnly); err != nil {
			return err
		}
		// The bind covers the hiding mounts at or below its target (they
		// are no longer mount points to make read-only), and shows what
		// its source holds, hidden paths included.
		hidden = slices.DeleteFunc(hidden, func(h string) bool { return within(h, target) })
		again, err := rehide(b.Source, target, hidePaths)
		if err != nil {
			return err
		}
		hidden = append(hidden, again...)
	}
	// Only now: the binds above may have needed mount points in the tmpfs.
	for _, h := range hidden {
		if err := setReadOnly(h, false, 0); err != nil {
			return fmt.Errorf("hide %s: %w", h, err)
		}
	}

	if err := unix.Chdir(nr); err != nil {
		return fmt.Errorf("enter new root: %w", err)
	}
	// pivot_root(".", ".") stacks the old root on top of the new one, so no
	// directory for it is needed on the read-only root; detach it at once.
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot root: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach old root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("enter new root: %w", err)
	}
	return nil
}

// imageRoot assembles an image sandbox's root and returns where: an
// overlay of the image's read-only root under a writable layer on a tmpfs
// capped like /tmp (tmpOpts), thrown away with the mount namespace. The
// session-independent mounts prepareRoot made on nr (/dev, /proc, /sys)
// move into it; the host's root stays behind.
func imageRoot(nr, tmpOpts string, cfg *sessionConfig) (string, error) {
	scratch := filepath.Join(nr, sandboxTmp)
	if err := unix.Mount("tmpfs", scratch, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, tmpOpts); err != nil {
		return "", fmt.Errorf("mount the image's writable layer: %w", err)
	}
	upper, work, root := filepath.Join(scratch, "upper"), filepath.Join(scratch, "work"), filepath.Join(scratch, "root")
	for _, d := range []string{upper, work, root} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return "", fmt.Errorf("mount the image's root: %w", err)
		}
	}
	opts := "lowerdir=" + cfg.Image.Rootfs + ",upperdir=" + upper + ",workdir=" + work
	if err := unix.Mount("overlay", root, "overlay", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		return "", fmt.Errorf("mount the image's root (overlay of %s): %w", cfg.Image.Rootfs, err)
	}
	for _, d := range []string{"dev", "proc", "sys"} {
		target := filepath.Join(root, d)
		if err := realDir(target, 0o755); err != nil {
			return "", fmt.Errorf("image's /%s: %w", d, err)
		}
		if err := unix.Mount(filepath.Join(nr, d), target, "", unix.MS_MOVE, ""); err != nil {
			return "", fmt.Errorf("move /%s into the image's root: %w", d, err)
		}
	}
	if err := realDir(filepath.Join(root, sandboxTmp), 0o1777); err != nil {
		return "", fmt.Errorf("image's /tmp: %w", err)
	}
	if cfg.Dir != "" {
		// As container runtimes do, a working directory the image lacks is made.
		if err := os.MkdirAll(resolveIn(root, cfg.Dir), 0o755); err != nil {
			return "", fmt.Errorf("image's working directory %s: %w", cfg.Dir, err)
		}
	}
	return root, nil
}

// realDir makes sure p is a directory (not a symlink out of the image's
// root), creating it with mode if missing.
func realDir(p string, mode os.FileMode) error {
	fi, err := os.Lstat(p)
	switch {
	case err == nil && fi.IsDir():
		return nil
	case err == nil:
		return fmt.Errorf("is a %s, not a directory", fi.Mode().Type())
	case !errors.Is(err, os.ErrNotExist):
		return err
	}
	if err := os.Mkdir(p, 0o755); err != nil {
		return err
	}
	return os.Chmod(p, mode)
}

// resolveIn follows symlinks at p (a path inside the new root nr) as the
// sandbox would see them, and returns the host path of the final target.
func resolveIn(nr, p string) string {
	for range 8 {
		link, err := os.Readlink(filepath.Join(nr, p))
		if err != nil {
			break
		}
		if !filepath.IsAbs(link) {
			link = filepath.Join(filepath.Dir(p), link)
		}
		p = filepath.Clean(link)
	}
	return filepath.Join(nr, p)
}

// setReadOnly makes a mount (and with recursive, every mount below it)
// read-only. mount_setattr only adds flags, so locked flags such as nodev on
// the host's mounts are kept, which a MS_REMOUNT would have to repeat.
func setReadOnly(path string, recursive bool, extra uint64) error {
	var flags uint
	if recursive {
		flags = unix.AT_RECURSIVE
	}
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY | extra}
	if err := unix.MountSetattr(-1, path, flags, &attr); err != nil {
		return fmt.Errorf("mount_setattr %s: %w", path, err)
	}
	return nil
}

// bind mounts source on target, creating the mount point if target lies in
// a writable place (a hiding tmpfs or /tmp).
func bind(source, target string, ro bool) error {
	fi, err := os.Stat(source)
	if err != nil {
		return fmt.Errorf("bind %s: %w", source, err)
	}
	err = mountPoint(target, fi.IsDir())
	if errors.Is(err, unix.EROFS) {
		// The mount point would be in the read-only host root (session
		// storage under /mnt): a small tmpfs over its parent holds it, and
		// hides the host's entries there.
		parent := filepath.Dir(target)
		if err = unix.Mount("tmpfs", parent, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "size=64k,mode=0755"); err == nil {
			err = mountPoint(target, fi.IsDir())
		}
	}
	if err != nil {
		return fmt.Errorf("bind %s: %w", source, err)
	}
	if err := unix.Mount(source, target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind %s: %w", source, err)
	}
	if ro {
		if err := setReadOnly(target, true, 0); err != nil {
			return fmt.Errorf("bind %s: %w", source, err)
		}
	}
	return nil
}

func mountPoint(target string, dir bool) error {
	if _, err := os.Stat(target); err == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return fmt.Errorf("create mount point: %w", err)
	}
	if dir {
		if err := os.Mkdir(target, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("create mount point: %w", err)
		}
		return nil
	}
	f, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("create mount point: %w", err)
	}
	return f.Close()
}

func setupDev(nr string) error {
	dev := filepath.Join(nr, "dev")
	if err := unix.Mount("tmpfs", dev, "tmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, "size=64k,mode=0755"); err != nil {
		return fmt.Errorf("mount /dev: %w", err)
	}
	for _, d := range []string{"null", "zero", "full", "random", "urandom", "tty"} {
		if err := bind("/dev/"+d, filepath.Join(dev, d), false); err != nil {
			return err
		}
	}
	for name, target := range map[string]string{
		"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
		"stderr": "/proc/self/fd/2", "ptmx": "pts/ptmx", "shm": sandboxShm,
	} {
		if err := os.Symlink(target, filepath.Join(dev, name)); err != nil {
			return fmt.Errorf("populate /dev: %w", err)
		}
	}
	pts := filepath.Join(dev, "pts")
	if err := os.Mkdir(pts, 0o755); err != nil {
		return fmt.Errorf("populate /dev: %w", err)
	}
	if err := unix.Mount("devpts", pts, "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620"); err != nil {
		return fmt.Errorf("mount /dev/pts: %w", err)
	}
	return setReadOnly(dev, false, 0)
}

// procReadOnly and procMasked follow what container runtimes hide: kernel
// knobs a uid-0 process could write without capabilities, and files that
// leak host kernel state.
var (
	procReadOnly = []string{"sys", "sysrq-trigger", "irq", "bus", "fs"}
	procMasked   = []string{"kcore", "keys", "timer_list", "latency_stats", "sched_debug", "acpi", "scsi"}
)

func setupProc(nr string) error {
	proc := filepath.Join(nr, "proc")
	if err := unix.Mount("proc", proc, "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount /proc: %w", err)
	}
	for _, p := range procReadOnly {
		p = filepath.Join(proc, p)
		if _, err := os.Stat(p); err != nil {
			continue
		}
		if err := unix.Mount(p, p, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("protect %s: %w", p, err)
		}
		if err := setReadOnly(p, true, 0); err != nil {
			return fmt.Errorf("protect %s: %w", p, err)
		}
	}
	for _, p := range procMasked {
		p = filepath.Join(proc, p)
		fi, err := os.Stat(p)
		if err != nil {
			continue
		}
		if fi.IsDir() {
			err = unix.Mount("tmpfs", p, "tmpfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "size=0")
		} else {
			err = unix.Mount("/dev/null", p, "", unix.MS_BIND, "")
		}
		if err != nil {
			return fmt.Errorf("mask %s: %w", p, err)
		}
	}
	return nil
}

// setupSys gives a sandbox with its own network namespace a fresh sysfs (it
// lists only that namespace's interfaces and has no cgroup mounts). Sharing
// the host network, it keeps the host's read-only sysfs minus the cgroup
// tree, which would show other sandboxes.
func setupSys(nr string, ownNet bool) error {
	sys := filepath.Join(nr, "sys")
	if ownNet {
		if err := unix.Mount("sysfs", sys, "sysfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
			return fmt.Errorf("mount /sys: %w", err)
		}
		return nil
	}
	cg := filepath.Join(sys, "fs", "cgroup")
	if _, err := os.Stat(cg); err != nil {
		return nil
	}
	if err := unix.Mount("tmpfs", cg, "tmpfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "size=0"); err != nil {
		return fmt.Errorf("hide /sys/fs/cgroup: %w", err)
	}
	return nil
}
