package daemon_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	ctl "github.com/aws/aws-sdk-go-v2/service/bedrockagentcorecontrol"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/config"
	"github.com/google/uuid"
)

// TestObjectQuotas: past max_runtimes a create is ServiceQuotaExceeded
// (the config file's runtime counts); each runtime keeps its newest
// max_versions versions and the ones its endpoints pin.
func TestObjectQuotas(t *testing.T) {
	ctx := context.Background()
	dir := codeDir(t)
	data := t.TempDir()
	c := startCP(t, data, "process", uuid.NewString(), func(cfg *config.Config) {
		cfg.MaxRuntimes, cfg.MaxVersions = 3, 2
	})
	var ids []string
	for i := range 2 { // with "fromconfig", three
		out, err := c.ctl.CreateAgentRuntime(ctx, c.createInput(fmt.Sprintf("quota_%d", i), dir, "v1"))
		if err != nil {
			t.Fatalf("create runtime %d of 3: %v", i+2, err)
		}
		ids = append(ids, aws.ToString(out.AgentRuntimeId))
	}
	_, err := c.ctl.CreateAgentRuntime(ctx, c.createInput("quota_over", dir, "v1"))
	var ae smithy.APIError
	var re *smithyhttp.ResponseError
	if !errors.As(err, &ae) || ae.ErrorCode() != string(api.ErrServiceQuota) || !errors.As(err, &re) || re.HTTPStatusCode() != http.StatusPaymentRequired {
		t.Fatalf("a fourth runtime: %v; want ServiceQuotaExceededException", err)
	}
	t.Logf("a caller sees: %v", err)
	if _, err := c.ctl.DeleteAgentRuntime(ctx, &ctl.DeleteAgentRuntimeInput{AgentRuntimeId: aws.String(ids[1])}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ctl.CreateAgentRuntime(ctx, c.createInput("quota_over", dir, "v1")); err != nil {
		t.Fatalf("create once a runtime was deleted: %v", err)
	}

	id := ids[0]
	if _, err := c.ctl.CreateAgentRuntimeEndpoint(ctx, &ctl.CreateAgentRuntimeEndpointInput{
		AgentRuntimeId: aws.String(id), Name: aws.String("pinned"), AgentRuntimeVersion: aws.String("1")}); err != nil {
		t.Fatal(err)
	}
	// Version 2 runs code of its own; the others share one snapshot.
	other := codeDir(t)
	if err := os.WriteFile(filepath.Join(other, "marker"), []byte("v2"), 0o644); err != nil {
		t.Fatal(err)
	}
	snapshots := func() int {
		ents, err := os.ReadDir(filepath.Join(data, "snapshots"))
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	for v := 2; v <= 6; v++ {
		code := dir
		if v == 2 {
			code = other
		}
		if _, err := c.ctl.UpdateAgentRuntime(ctx, &ctl.UpdateAgentRuntimeInput{
			AgentRuntimeId: aws.String(id), AgentRuntimeArtifact: codeArtifact(code, "testagent"),
			RoleArn: aws.String("arn:aws:iam::123456789012:role/berth-test"), EnvironmentVariables: c.env(fmt.Sprint(v)),
		}); err != nil {
			t.Fatalf("update to version %d: %v", v, err)
		}
		if v == 2 && snapshots() != 2 {
			t.Fatalf("%d code snapshots after version 2, want 2", snapshots())
		}
	}
	if n := snapshots(); n != 1 {
		t.Fatalf("%d code snapshots once version 2 was pruned, want 1", n)
	}
	vers, err := c.ctl.ListAgentRuntimeVersions(ctx, &ctl.ListAgentRuntimeVersionsInput{AgentRuntimeId: aws.String(id)})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, v := range vers.AgentRuntimes {
		got = append(got, aws.ToString(v.AgentRuntimeVersion))
	}
	if want := []string{"1", "5", "6"}; !slices.Equal(got, want) {
		t.Fatalf("versions kept %v, want %v (the pinned one and the newest two)", got, want)
	}
	// The pinned endpoint still serves its version.
	if e := c.echo(aws.ToString(vers.AgentRuntimes[0].AgentRuntimeArn), "pinned", newSessionID()); e.Env["VERSION_MARK"] != "v1" {
		t.Fatalf("pinned endpoint runs %+v", e)
	}
}
