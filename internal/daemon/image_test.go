package daemon_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/bedrockagentcore"
	ctl "github.com/aws/aws-sdk-go-v2/service/bedrockagentcorecontrol"
	ctltypes "github.com/aws/aws-sdk-go-v2/service/bedrockagentcorecontrol/types"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/uuid"

	"github.com/berth-dev/berth/client"
	"github.com/berth-dev/berth/internal/config"
	"github.com/berth-dev/berth/internal/daemon"
	"github.com/berth-dev/berth/internal/image/imagetest"
	"github.com/berth-dev/berth/internal/registry"
	"github.com/berth-dev/berth/internal/sandbox/linux"
	"github.com/berth-dev/berth/internal/sandbox/sandboxtest"
	"github.com/berth-dev/berth/internal/testenv"
)

// agentImage is the conformance test agent (a static Go binary) as a
// container image: its own user, working directory and environment.
func agentImage(t *testing.T, mark string) v1.Image {
	t.Helper()
	bin := sandboxtest.BuildAgent(t)
	base := imagetest.Layer(t,
		imagetest.Dir("etc", 0o755),
		imagetest.File("etc/passwd", "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n", 0o644),
		imagetest.File("etc/group", "root:x:0:\napp:x:1000:\n", 0o644),
		imagetest.Entry{Path: "home/app", Type: '5', Mode: 0o755, UID: 1000, GID: 1000},
		imagetest.Dir("usr/local/bin", 0o755),
		imagetest.Entry{Path: "usr/local/bin/agent", Source: bin, Mode: 0o755},
	)
	return imagetest.Image(t, "linux/amd64", v1.Config{
		Entrypoint:   []string{"/usr/local/bin/agent"},
		Env:          []string{"PATH=/usr/local/bin:/usr/bin:/bin", "VERSION_MARK=" + mark, "IMAGE_ONLY=yes"},
		WorkingDir:   "/srv/agent",
		User:         "app",
		ExposedPorts: map[string]struct{}{"8080/tcp": {}},
	}, base)
}

type imageEcho struct {
	UID   int               `json:"uid"`
	Cwd   string            `json:"cwd"`
	Count int               `json:"count"`
	Env   map[string]string `json:"env"`
}

func invokeImage(t *testing.T, dp *bedrockagentcore.Client, arn, session string) imageEcho {
	t.Helper()
	out, err := dp.InvokeAgentRuntime(context.Background(), &bedrockagentcore.InvokeAgentRuntimeInput{
		AgentRuntimeArn:  aws.String(arn),
		RuntimeSessionId: aws.String(session),
		ContentType:      aws.String("application/json"),
		Payload:          []byte(`{"op":"echo","env":["VERSION_MARK","IMAGE_ONLY","FROM_RUNTIME"]}`),
	})
	if err != nil {
		t.Fatalf("invoke %s session %s: %v", arn, session, err)
	}
	defer out.Response.Close()
	var e imageEcho
	if err := json.NewDecoder(out.Response).Decode(&e); err != nil {
		t.Fatalf("decode echo: %v", err)
	}
	return e
}

// TestImageRuntime: an image pushed to a registry runs through the
// control plane's containerConfiguration, as the image's config says,
// one sandbox per session; an update pins the tag's new digest while the
// old version's sessions keep their image.
func TestImageRuntime(t *testing.T) {
	testenv.Require(t, testenv.Linux, linux.Available())
	reg := imagetest.NewRegistry(t, nil)
	v1Digest := reg.Push(t, "team/agent:live", agentImage(t, "v1"))
	c := startCP(t, t.TempDir(), "linux", uuid.NewString(), func(cfg *config.Config) {
		cfg.APIRuntimes.Registries = []string{reg.Host}
	})
	ctx := context.Background()

	in := &ctl.CreateAgentRuntimeInput{
		AgentRuntimeName: aws.String("image_agent"),
		AgentRuntimeArtifact: &ctltypes.AgentRuntimeArtifactMemberContainerConfiguration{
			Value: ctltypes.ContainerConfiguration{ContainerUri: aws.String(reg.Ref("team/agent:live"))}},
		RoleArn:              aws.String("arn:aws:iam::123456789012:role/berth-test"),
		NetworkConfiguration: &ctltypes.NetworkConfiguration{NetworkMode: ctltypes.NetworkModePublic},
		EnvironmentVariables: map[string]string{"FROM_RUNTIME": "set by the runtime"},
	}
	created, err := c.ctl.CreateAgentRuntime(ctx, in)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if created.Status != ctltypes.AgentRuntimeStatusReady {
		t.Errorf("create status %q", created.Status)
	}
	id, arn := aws.ToString(created.AgentRuntimeId), aws.ToString(created.AgentRuntimeArn)
	got, err := c.ctl.GetAgentRuntime(ctx, &ctl.GetAgentRuntimeInput{AgentRuntimeId: aws.String(id)})
	if err != nil {
		t.Fatal(err)
	}
	if cc, ok := got.AgentRuntimeArtifact.(*ctltypes.AgentRuntimeArtifactMemberContainerConfiguration); !ok ||
		aws.ToString(cc.Value.ContainerUri) != reg.Ref("team/agent:live") {
		t.Errorf("GetAgentRuntime artifact = %#v; want the containerConfiguration it was created with", got.AgentRuntimeArtifact)
	}

	old := "image-session-old-" + uuid.NewString()
	e := invokeImage(t, c.dp, arn, old)
	if e.UID != 1000 || e.Cwd != "/srv/agent" || e.Env["HOME"] != "/home/app" || e.Env["PORT"] != "8080" ||
		e.Env["VERSION_MARK"] != "v1" || e.Env["IMAGE_ONLY"] != "yes" || e.Env["FROM_RUNTIME"] != "set by the runtime" {
		t.Errorf("agent saw %+v; want uid 1000, cwd /srv/agent, HOME /home/app, the image's env and the runtime's", e)
	}
	if again := invokeImage(t, c.dp, arn, old); again.Count != e.Count+1 {
		t.Errorf("second call in the session counted %d after %d: not the same sandbox", again.Count, e.Count)
	}
	if other := invokeImage(t, c.dp, arn, "image-session-other-"+uuid.NewString()); other.Count != 1 {
		t.Errorf("a second session counted %d; want a sandbox of its own", other.Count)
	}

	// The tag moves; an update pins its new digest.
	reg.Push(t, "team/agent:live", agentImage(t, "v2"))
	if _, err := c.ctl.UpdateAgentRuntime(ctx, &ctl.UpdateAgentRuntimeInput{
		AgentRuntimeId:       aws.String(id),
		AgentRuntimeArtifact: in.AgentRuntimeArtifact,
		RoleArn:              in.RoleArn,
		NetworkConfiguration: in.NetworkConfiguration,
		EnvironmentVariables: in.EnvironmentVariables,
	}); err != nil {
		t.Fatalf("update: %v", err)
	}
	if e := invokeImage(t, c.dp, arn, "image-session-new-"+uuid.NewString()); e.Env["VERSION_MARK"] != "v2" {
		t.Errorf("a new session after the update runs %q; want v2", e.Env["VERSION_MARK"])
	}
	if e := invokeImage(t, c.dp, arn, old); e.Env["VERSION_MARK"] != "v1" {
		t.Errorf("the session started before the update runs %q; want its own v1", e.Env["VERSION_MARK"])
	}
	if imgs, err := c.d.Images().List(); err != nil || len(imgs) != 2 {
		t.Errorf("image store holds %d images (%v); want both digests", len(imgs), err)
	}
	// berth's session API says which image a session runs.
	bc := &client.Client{Endpoint: c.d.URL()}
	list, err := bc.ListSessions(ctx, client.SessionFilter{Runtime: id, State: "live", Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, s := range list.Sessions {
		if s.SessionID != old {
			continue
		}
		found = true
		got, err := bc.GetSession(ctx, s.ID)
		if err != nil || got.Image == nil || got.Image.Digest != v1Digest || got.Image.Ref != reg.Ref("team/agent:live") ||
			got.Image.Platform != "linux/amd64" || got.Image.Emulated {
			t.Errorf("session show: image %+v (%v); want %s at %s, native", got.Image, err, reg.Ref("team/agent:live"), v1Digest)
		}
	}
	if !found {
		t.Errorf("the session started before the update is not listed live: %+v", list.Sessions)
	}

	// An unknown tag fails the create with a clear reason.
	in.AgentRuntimeName = aws.String("image_missing")
	in.AgentRuntimeArtifact = &ctltypes.AgentRuntimeArtifactMemberContainerConfiguration{
		Value: ctltypes.ContainerConfiguration{ContainerUri: aws.String(reg.Ref("team/agent:nosuch"))}}
	_, err = c.ctl.CreateAgentRuntime(ctx, in)
	if err == nil || !strings.Contains(err.Error(), "ValidationException") || !strings.Contains(err.Error(), "no image") {
		t.Errorf("create with an unknown tag: %v; want a ValidationException saying there is no such image", err)
	}
}

// TestImageRegistryDownAtStart: a config runtime's image is pulled at every
// start; with its registry down, berth starts on the image it had.
func TestImageRegistryDownAtStart(t *testing.T) {
	testenv.Require(t, testenv.Linux, linux.Available())
	var down atomic.Bool
	reg := imagetest.NewRegistry(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if down.Load() {
				http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	digest := reg.Push(t, "team/agent:live", agentImage(t, "v1"))
	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	cfg.Runtimes = []config.Runtime{{Name: "imaged", Settings: registry.Settings{Image: reg.Ref("team/agent:live")}}}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	d, err := daemon.Start(context.Background(), cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	d.Close(context.Background())

	down.Store(true)
	d, err = daemon.Start(context.Background(), cfg, log)
	if err != nil {
		t.Fatalf("start with the registry down: %v", err)
	}
	defer d.Close(context.Background())
	imgs, err := d.Images().List()
	if err != nil || len(imgs) != 1 || imgs[0].Digest != digest {
		t.Fatalf("images after a start with the registry down: %+v, %v", imgs, err)
	}
	creds := credentials.NewStaticCredentialsProvider("AKIDBERTHTEST", "secret", "")
	dp := bedrockagentcore.New(bedrockagentcore.Options{Region: "us-east-1", BaseEndpoint: aws.String(d.URL()), Credentials: creds, Retryer: aws.NopRetryer{}})
	if e := invokeImage(t, dp, d.Runtimes()[0].ARN, "image-down-"+uuid.NewString()); e.Env["VERSION_MARK"] != "v1" {
		t.Errorf("the runtime runs %+v; want the image it had", e)
	}
}
