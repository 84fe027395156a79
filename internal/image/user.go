package image

import (
	"bufio"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/berth-dev/berth/internal/errdefs"
)

// resolveUser fills c's UID, GID, Groups and Home from c.User and the
// image's /etc/passwd and /etc/group, as a container runtime does: a name
// must be in the files; a number need not be (its group is then 0, or
// the passwd entry's); supplementary groups are those listing the user.
func resolveUser(root string, c *Config) error {
	c.Home = "/"
	passwd, err := readInRoot(root, "etc/passwd")
	if err != nil {
		return err
	}
	group, err := readInRoot(root, "etc/group")
	if err != nil {
		return err
	}
	spec := c.User
	if spec == "" {
		spec = "0"
	}
	userPart, groupPart, hasGroup := strings.Cut(spec, ":")
	name := ""
	uid, numeric := parseID(userPart)
	gid := uint32(0)
	found := false
	for _, f := range entries(passwd, 7) {
		id, ok := parseID(f[2])
		if !ok {
			continue
		}
		if (numeric && id == uid) || (!numeric && f[0] == userPart) {
			name, uid, found = f[0], id, true
			if g, ok := parseID(f[3]); ok {
				gid = g
			}
			if f[5] != "" {
				c.Home = f[5]
			}
			break
		}
	}
	if !found && !numeric {
		return fmt.Errorf("its config's user %q is not in the image's /etc/passwd: %w", userPart, errdefs.ErrInvalidArgument)
	}
	if hasGroup {
		g, ok := parseID(groupPart)
		if !ok {
			ok = false
			for _, f := range entries(group, 4) {
				if f[0] == groupPart {
					g, ok = parseID(f[2])
					break
				}
			}
			if !ok {
				return fmt.Errorf("its config's group %q is not in the image's /etc/group: %w", groupPart, errdefs.ErrInvalidArgument)
			}
		}
		gid = g
	}
	c.UID, c.GID, c.Groups = uid, gid, nil
	if name != "" && !hasGroup {
		for _, f := range entries(group, 4) {
			g, ok := parseID(f[2])
			if ok && g != gid && slices.Contains(strings.Split(f[3], ","), name) && !slices.Contains(c.Groups, g) {
				c.Groups = append(c.Groups, g)
			}
		}
	}
	return nil
}

func parseID(s string) (uint32, bool) {
	n, err := strconv.ParseUint(s, 10, 32)
	return uint32(n), err == nil
}

// entries splits a passwd-style file into lines of at least n fields.
func entries(data string, n int) [][]string {
	var out [][]string
	sc := bufio.NewScanner(strings.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if f := strings.Split(line, ":"); len(f) >= n {
			out = append(out, f)
		}
	}
	return out
}
