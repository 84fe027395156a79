package auth

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The credentials file is in AWS's shared-credentials format, so the keys
// a user exports for berth are keys any AWS SDK reads:
//
//	[alice]
//	aws_access_key_id = BKIA...
//	aws_secret_access_key = ...
//
// Each profile is a principal named by the profile.

// Key is one principal's key pair.
type Key struct {
	Name            string
	AccessKeyID     string
	SecretAccessKey string
}

var principalRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$`)

// ValidPrincipalName checks a principal (profile) name: 1-64 letters,
// digits and _.@-, starting with a letter or digit.
func ValidPrincipalName(name string) error {
	if !principalRE.MatchString(name) {
		return fmt.Errorf("%q is not a principal name: use 1-64 letters, digits and _.@- (starting with a letter or digit)", name)
	}
	return nil
}

// ParseCredentials reads a shared-credentials file's profiles. Every
// profile needs both keys; an access key ID used twice, a session token
// (berth's keys are long-lived) or a malformed line is an error naming
// its line.
func ParseCredentials(data []byte) ([]Key, error) {
	var keys []Key
	seen, ids := map[string]bool{}, map[string]string{}
	var cur *Key
	finish := func() error {
		if cur == nil {
			return nil
		}
		switch {
		case cur.AccessKeyID == "":
			return fmt.Errorf("profile [%s] has no aws_access_key_id", cur.Name)
		case cur.SecretAccessKey == "":
			return fmt.Errorf("profile [%s] has no aws_secret_access_key", cur.Name)
		case ids[cur.AccessKeyID] != "":
			return fmt.Errorf("profiles [%s] and [%s] share an access key ID", ids[cur.AccessKeyID], cur.Name)
		}
		ids[cur.AccessKeyID] = cur.Name
		keys = append(keys, *cur)
		return nil
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
			continue
		case line[0] == '[':
			if err := finish(); err != nil {
				return nil, err
			}
			name, ok := strings.CutSuffix(line[1:], "]")
			name = strings.TrimSpace(name)
			if !ok {
				return nil, fmt.Errorf("line %d: a profile header is [NAME]", n)
			}
			if err := ValidPrincipalName(name); err != nil {
				return nil, fmt.Errorf("line %d: %w", n, err)
			}
			if seen[name] {
				return nil, fmt.Errorf("line %d: profile [%s] appears twice", n, name)
			}
			seen[name] = true
			cur = &Key{Name: name}
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("line %d: want key = value", n)
		}
		if cur == nil {
			return nil, fmt.Errorf("line %d: a key before the first [profile]", n)
		}
		k, v = strings.ToLower(strings.TrimSpace(k)), strings.TrimSpace(v)
		switch k {
		case "aws_access_key_id":
			cur.AccessKeyID = v
		case "aws_secret_access_key":
			cur.SecretAccessKey = v
		case "aws_session_token", "aws_security_token":
			return nil, fmt.Errorf("line %d: profile [%s] has a session token; berth's keys are long-lived key pairs without one", n, cur.Name)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if err := finish(); err != nil {
		return nil, err
	}
	return keys, nil
}

// Keyring is the credentials file's principals, re-read when the file
// changes (Watch) or when told to (Reload, on SIGHUP). A file that fails
// to parse keeps the keys berth had.
type Keyring struct {
	path string
	log  *slog.Logger

	// mu guards byID and stamp.
	mu    sync.RWMutex
	byID  map[string]Key
	stamp fileStamp
}

// fileStamp tells a changed file from an unchanged one without reading it.
type fileStamp struct {
	mod  time.Time
	size int64
	ino  uint64
}

func stampOf(fi fs.FileInfo) fileStamp {
	s := fileStamp{mod: fi.ModTime(), size: fi.Size()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.ino = uint64(st.Ino)
	}
	return s
}

// OpenKeyring reads the credentials file at path.
func OpenKeyring(path string, log *slog.Logger) (*Keyring, error) {
	if log == nil {
		log = slog.Default()
	}
	k := &Keyring{path: path, log: log}
	if _, err := k.Reload(); err != nil {
		return nil, err
	}
	return k, nil
}

// Path is the credentials file's path.
func (k *Keyring) Path() string { return k.path }

// Reload re-reads the file; on an error the keys stay as they were. It
// reports how many principals the file now holds.
func (k *Keyring) Reload() (int, error) {
	fi, err := os.Stat(k.path)
	if err != nil {
		return 0, fmt.Errorf("credentials file: %w", err)
	}
	data, err := os.ReadFile(k.path)
	if err != nil {
		return 0, fmt.Errorf("credentials file: %w", err)
	}
	keys, err := ParseCredentials(data)
	if err != nil {
		return 0, fmt.Errorf("credentials file %s: %w", k.path, err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		k.log.Warn("the credentials file is readable by other users; chmod 600 it", "path", k.path, "mode", fi.Mode().Perm().String())
	}
	byID := make(map[string]Key, len(keys))
	for _, key := range keys {
		byID[key.AccessKeyID] = key
	}
	k.mu.Lock()
	k.byID, k.stamp = byID, stampOf(fi)
	k.mu.Unlock()
	return len(keys), nil
}

// Lookup finds the principal an access key ID belongs to.
func (k *Keyring) Lookup(accessKeyID string) (Key, bool) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	key, ok := k.byID[accessKeyID]
	return key, ok
}

// Watch re-reads the file whenever it changes, checking every interval,
// until ctx is done.
func (k *Keyring) Watch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		fi, err := os.Stat(k.path)
		if err != nil {
			continue
		}
		k.mu.RLock()
		same := k.stamp == stampOf(fi)
		k.mu.RUnlock()
		if same {
			continue
		}
		if n, err := k.Reload(); err != nil {
			k.log.Error("credentials file changed but cannot be read; keeping the previous keys", "err", err)
		} else {
			k.log.Info("credentials file reloaded", "path", k.path, "principals", n)
		}
	}
}

// ErrProfileExists is returned by CreateProfile for a name already there.
var ErrProfileExists = errors.New("profile exists")

// CreateProfile adds a principal with a fresh key pair to the credentials
// file at path, creating the file (mode 0600) if needed.
func CreateProfile(path, name string) (Key, error) {
	if err := ValidPrincipalName(name); err != nil {
		return Key{}, err
	}
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return Key{}, fmt.Errorf("read credentials file: %w", err)
	}
	keys, err := ParseCredentials(data)
	if err != nil {
		return Key{}, fmt.Errorf("credentials file %s: %w", path, err)
	}
	for _, k := range keys {
		if k.Name == name {
			return Key{}, fmt.Errorf("%s already has a profile [%s]: %w", path, name, ErrProfileExists)
		}
	}
	key := NewKey(name)
	var b strings.Builder
	if len(data) > 0 && !bytes.HasSuffix(data, []byte("\n")) {
		b.WriteString("\n")
	}
	if len(data) > 0 {
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "[%s]\naws_access_key_id = %s\naws_secret_access_key = %s\n", key.Name, key.AccessKeyID, key.SecretAccessKey)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return Key{}, fmt.Errorf("open credentials file: %w", err)
	}
	if _, err := f.WriteString(b.String()); err != nil {
		f.Close()
		return Key{}, fmt.Errorf("write credentials file: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return Key{}, fmt.Errorf("write credentials file: %w", err)
	}
	if err := f.Close(); err != nil {
		return Key{}, fmt.Errorf("write credentials file: %w", err)
	}
	return key, nil
}

// NewKey makes a fresh key pair shaped like AWS's: a 20-character access
// key ID starting BKIA (berth's, where AWS's start AKIA) and a
// 40-character secret.
func NewKey(name string) Key {
	id := make([]byte, 10)
	rand.Read(id)
	secret := make([]byte, 30)
	rand.Read(secret)
	return Key{
		Name:            name,
		AccessKeyID:     "BKIA" + base32.StdEncoding.EncodeToString(id)[:16],
		SecretAccessKey: base64.StdEncoding.EncodeToString(secret),
	}
}

func randomKey() []byte {
	b := make([]byte, 32)
	rand.Read(b)
	return b
}
