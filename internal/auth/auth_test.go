package auth

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/errdefs"
)

// Who may call a SigV4 runtime, and who the session belongs to.
func TestAuthorizeSigV4(t *testing.T) {
	keys, _, _ := testKeys(t)
	a, err := New(Options{Mode: ModeSigV4, Keys: keys, Region: "us-east-1",
		Policy: Policy{Admins: []string{"ops"}, ActAsUser: []string{"webapp"}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	as := func(name string) *Caller {
		return &Caller{Principal: Principal{Kind: KindSigV4, Name: name}, SigV4: true}
	}
	open := Runtime{ARN: testARN}
	listed := Runtime{ARN: testARN, Invokers: []string{"alice", "webapp"}}

	g, err := a.Authorize(ctx, as("bob"), open, "")
	if err != nil || g.Owner != "sigv4:bob" || g.WorkloadToken != "" {
		t.Errorf("bob on a runtime without invokers: %+v, %v", g, err)
	}
	if _, err := a.Authorize(ctx, as("bob"), listed, ""); !errors.Is(err, errdefs.ErrPermissionDenied) {
		t.Errorf("bob, not an invoker: %v", err)
	}
	if _, err := a.Authorize(ctx, as("ops"), listed, ""); !errors.Is(err, errdefs.ErrPermissionDenied) {
		t.Errorf("an admin not among the invokers: %v", err)
	}
	if _, err := a.Authorize(ctx, as("alice"), listed, "u-1"); !errors.Is(err, errdefs.ErrPermissionDenied) ||
		!strings.Contains(err.Error(), "InvokeAgentRuntimeForUser") {
		t.Errorf("alice naming a user: %v", err)
	}
	g, err = a.Authorize(ctx, as("webapp"), listed, "u-1")
	if err != nil || g.Owner != "user:u-1" || !strings.HasPrefix(g.WorkloadToken, watPrefix) {
		t.Errorf("webapp (act_as_user) for u-1: %+v, %v", g, err)
	}
	g2, _ := a.Authorize(ctx, as("webapp"), listed, "u-2")
	g3, _ := a.Authorize(ctx, as("webapp"), listed, "u-1")
	if g2.WorkloadToken == g.WorkloadToken || g3.WorkloadToken != g.WorkloadToken {
		t.Errorf("workload tokens: one per identity, stable: %q %q %q", g.WorkloadToken, g2.WorkloadToken, g3.WorkloadToken)
	}
	if _, err := a.Authorize(ctx, as("ops"), open, "u-1"); err != nil {
		t.Errorf("an admin naming a user: %v", err)
	}

	var ae *Error
	if _, err := a.Authorize(ctx, &Caller{}, open, ""); !errors.As(err, &ae) || ae.Type != api.ErrMissingAuthToken {
		t.Errorf("nobody: %v", err)
	}
	if _, err := a.Authorize(ctx, &Caller{Bearer: "x"}, open, ""); !errors.Is(err, errdefs.ErrPermissionDenied) ||
		!strings.Contains(err.Error(), "authorization method mismatch") {
		t.Errorf("a bearer token on a SigV4 runtime: %v", err)
	}

	if _, err := a.Require(as("bob"), true); !errors.Is(err, errdefs.ErrPermissionDenied) {
		t.Errorf("bob as admin: %v", err)
	}
	if _, err := a.Require(as("ops"), true); err != nil {
		t.Errorf("ops as admin: %v", err)
	}
	if _, err := a.Require(as("bob"), false); err != nil {
		t.Errorf("bob signed in: %v", err)
	}
	if _, err := a.Require(&Caller{}, false); !errors.As(err, &ae) || ae.Type != api.ErrMissingAuthToken {
		t.Errorf("nobody signed in: %v", err)
	}
}

// With authentication off, every caller is open and sessions bind to the
// user ID header, as before.
func TestAuthorizeOpen(t *testing.T) {
	a, err := New(Options{Mode: ModeNone})
	if err != nil {
		t.Fatal(err)
	}
	c := &Caller{Principal: Principal{Kind: KindOpen}}
	g, err := a.Authorize(context.Background(), c, Runtime{ARN: testARN, Invokers: []string{"alice"}}, "u-1")
	if err != nil || g.Owner != "u-1" {
		t.Errorf("open: %+v, %v", g, err)
	}
	if _, err := a.Require(c, true); err != nil {
		t.Errorf("open as admin: %v", err)
	}
}

func TestParseCredentials(t *testing.T) {
	keys, err := ParseCredentials([]byte("# berth\n[alice]\naws_access_key_id = AK1\naws_secret_access_key=s1\nregion = us-east-1\n\n[bob]\n; x\naws_access_key_id=AK2\naws_secret_access_key = s2 \n"))
	if err != nil || len(keys) != 2 || keys[0] != (Key{"alice", "AK1", "s1"}) || keys[1] != (Key{"bob", "AK2", "s2"}) {
		t.Fatalf("%+v, %v", keys, err)
	}
	for name, in := range map[string]string{
		"no secret":     "[a]\naws_access_key_id = AK1\n",
		"no key id":     "[a]\naws_secret_access_key = s\n",
		"shared key id": "[a]\naws_access_key_id=K\naws_secret_access_key=s\n[b]\naws_access_key_id=K\naws_secret_access_key=t\n",
		"twice":         "[a]\naws_access_key_id=K\naws_secret_access_key=s\n[a]\naws_access_key_id=L\naws_secret_access_key=t\n",
		"session token": "[a]\naws_access_key_id=K\naws_secret_access_key=s\naws_session_token=x\n",
		"bad name":      "[a b]\naws_access_key_id=K\naws_secret_access_key=s\n",
		"key before":    "aws_access_key_id=K\n",
		"not key=value": "[a]\nhello\n",
		"open header":   "[a\n",
	} {
		if _, err := ParseCredentials([]byte(in)); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
}

func TestCreateProfile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "credentials")
	k1, err := CreateProfile(path, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	if _, err := CreateProfile(path, "alice"); !errors.Is(err, ErrProfileExists) {
		t.Errorf("second alice: %v", err)
	}
	k2, err := CreateProfile(path, "bob")
	if err != nil {
		t.Fatal(err)
	}
	if len(k1.AccessKeyID) != 20 || !strings.HasPrefix(k1.AccessKeyID, "BKIA") || len(k1.SecretAccessKey) != 40 || k1.AccessKeyID == k2.AccessKeyID {
		t.Errorf("keys %+v %+v", k1, k2)
	}
	data, _ := os.ReadFile(path)
	keys, err := ParseCredentials(data)
	if err != nil || len(keys) != 2 || keys[0] != k1 || keys[1] != k2 {
		t.Errorf("file holds %+v, %v", keys, err)
	}
}

// The keyring follows the file: a new profile works without a restart, a
// removed one stops working, and a broken file keeps the last good keys.
func TestKeyringWatch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "credentials")
	alice, err := CreateProfile(path, "alice")
	if err != nil {
		t.Fatal(err)
	}
	synctest.Test(t, func(t *testing.T) {
		k, err := OpenKeyring(path, nil)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			k.Watch(ctx, 2*time.Second)
		}()
		defer func() { cancel(); <-done }()
		settle := func() { time.Sleep(3 * time.Second); synctest.Wait() }

		bob, err := CreateProfile(path, "bob")
		if err != nil {
			t.Fatal(err)
		}
		settle()
		if got, ok := k.Lookup(bob.AccessKeyID); !ok || got.Name != "bob" {
			t.Fatalf("bob after the file changed: %+v %v", got, ok)
		}
		if err := os.WriteFile(path, []byte("[bob]\naws_access_key_id = "+bob.AccessKeyID+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		settle()
		if _, ok := k.Lookup(bob.AccessKeyID); !ok {
			t.Fatal("a broken file dropped the keys")
		}
		if err := os.WriteFile(path, []byte("[bob]\naws_access_key_id = "+bob.AccessKeyID+"\naws_secret_access_key = "+bob.SecretAccessKey+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		settle()
		if _, ok := k.Lookup(alice.AccessKeyID); ok {
			t.Error("alice still works after her profile was removed")
		}
		if _, ok := k.Lookup(bob.AccessKeyID); !ok {
			t.Error("bob stopped working")
		}
	})
}
