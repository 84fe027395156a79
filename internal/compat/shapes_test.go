package compat_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/config"
)

// botoModel is the part of a botocore service model the shape walk reads.
type botoModel struct {
	Operations map[string]struct {
		HTTP struct {
			Method     string `json:"method"`
			RequestURI string `json:"requestUri"`
		} `json:"http"`
		Output struct {
			Shape string `json:"shape"`
		} `json:"output"`
	} `json:"operations"`
	Shapes map[string]botoShape `json:"shapes"`
}

type botoShape struct {
	Type     string   `json:"type"`
	Required []string `json:"required"`
	Members  map[string]struct {
		Shape        string `json:"shape"`
		Location     string `json:"location"`
		LocationName string `json:"locationName"`
	} `json:"members"`
	Member struct {
		Shape string `json:"shape"`
	} `json:"member"`
}

// loadBotoModel reads a service model from the boto3 on this machine.
func loadBotoModel(t *testing.T, python, service string) botoModel {
	t.Helper()
	out, err := exec.Command(python, "-c", "import botocore, os; print(os.path.dirname(botocore.__file__))").Output()
	if err != nil {
		t.Fatalf("find botocore: %v", err)
	}
	dir := filepath.Join(strings.TrimSpace(string(out)), "data", service)
	versions, err := os.ReadDir(dir)
	if err != nil || len(versions) == 0 {
		t.Fatalf("botocore has no %s model: %v", service, err)
	}
	base := filepath.Join(dir, versions[len(versions)-1].Name(), "service-2.json")
	var r io.Reader
	if f, err := os.Open(base + ".gz"); err == nil {
		defer f.Close()
		if r, err = gzip.NewReader(f); err != nil {
			t.Fatal(err)
		}
	} else if f, err := os.Open(base); err == nil {
		defer f.Close()
		r = f
	} else {
		t.Fatalf("read %s: %v", base, err)
	}
	var m botoModel
	if err := json.NewDecoder(r).Decode(&m); err != nil {
		t.Fatalf("decode %s: %v", base, err)
	}
	return m
}

// missing lists the members the model requires that v lacks, walking into
// nested structures and lists.
func (m botoModel) missing(shape string, v any, header http.Header, path string) []string {
	sh := m.Shapes[shape]
	var out []string
	switch sh.Type {
	case "structure":
		obj, _ := v.(map[string]any)
		for _, name := range sh.Required {
			mem := sh.Members[name]
			key := name
			if mem.LocationName != "" {
				key = mem.LocationName
			}
			switch mem.Location {
			case "header":
				if header.Get(key) == "" {
					out = append(out, path+name+" (header "+key+")")
				}
			case "statusCode":
			default:
				if _, ok := obj[key]; !ok {
					out = append(out, path+name)
				}
			}
		}
		for name, mem := range sh.Members {
			if val, ok := obj[name]; ok && mem.Location == "" {
				out = append(out, m.missing(mem.Shape, val, nil, path+name+".")...)
			}
		}
	case "list":
		items, _ := v.([]any)
		for i, item := range items {
			out = append(out, m.missing(sh.Member.Shape, item, nil, fmt.Sprintf("%s[%d].", strings.TrimSuffix(path, "."), i))...)
		}
	}
	return out
}

// TestControlPlaneOutputsHaveEveryRequiredMember calls every control-plane
// operation on berth, for a runtime from the config file and one from the
// API, and checks each answer against botocore's model: a member the model
// requires is always there, so code such as get → update never meets a
// KeyError.
func TestControlPlaneOutputsHaveEveryRequiredMember(t *testing.T) {
	t.Parallel()
	python := requireBoto3(t)
	model := loadBotoModel(t, python, "bedrock-agentcore-control")
	codeRoot := t.TempDir()
	agentDir := filepath.Join(codeRoot, "agent")
	os.MkdirAll(agentDir, 0o755)
	os.WriteFile(filepath.Join(agentDir, "main.py"), []byte("print('hi')\n"), 0o644)
	b, _ := tutorialBerthWith(t, func(c *config.Config) { c.CodeRoots = []string{codeRoot} })

	call := func(op, method, path string, body any) {
		t.Helper()
		var rd io.Reader
		if body != nil {
			data, _ := json.Marshal(body)
			rd = bytes.NewReader(data)
		}
		req, _ := http.NewRequest(method, b.d.URL()+path, rd)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", op, err)
		}
		defer resp.Body.Close()
		var v any
		if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || resp.StatusCode >= 300 {
			t.Fatalf("%s: status %d, decode %v", op, resp.StatusCode, err)
		}
		if miss := model.missing(model.Operations[op].Output.Shape, v, resp.Header, ""); len(miss) > 0 {
			sort.Strings(miss)
			t.Errorf("%s %s: required members missing: %s", op, path, strings.Join(miss, ", "))
		}
	}
	create := api.RuntimeInput{
		AgentRuntimeName:     "shapes",
		AgentRuntimeArtifact: api.LocalCode(agentDir, "PYTHON_3_12", "main.py"),
		RoleArn:              "arn:aws:iam::123456789012:role/x",
		NetworkConfiguration: &api.NetworkConfiguration{NetworkMode: "PUBLIC"},
	}
	call("CreateAgentRuntime", http.MethodPut, "/runtimes/", create)
	create.AgentRuntimeName = ""
	call("UpdateAgentRuntime", http.MethodPut, "/runtimes/shapes/", create)
	for _, rt := range []string{"shapes", "tutorial"} {
		call("GetAgentRuntime", http.MethodGet, "/runtimes/"+rt+"/", nil)
		call("ListAgentRuntimeVersions", http.MethodPost, "/runtimes/"+rt+"/versions/", nil)
		call("ListAgentRuntimeEndpoints", http.MethodPost, "/runtimes/"+rt+"/runtime-endpoints/", nil)
		call("GetAgentRuntimeEndpoint", http.MethodGet, "/runtimes/"+rt+"/runtime-endpoints/DEFAULT/", nil)
	}
	call("ListAgentRuntimes", http.MethodPost, "/runtimes/", nil)
	call("CreateAgentRuntimeEndpoint", http.MethodPut, "/runtimes/shapes/runtime-endpoints/", api.EndpointInput{Name: "pinned"})
	call("UpdateAgentRuntimeEndpoint", http.MethodPut, "/runtimes/shapes/runtime-endpoints/pinned/", api.EndpointInput{Description: ptrTo("moved")})
	call("DeleteAgentRuntimeEndpoint", http.MethodDelete, "/runtimes/shapes/runtime-endpoints/pinned/", nil)
	call("DeleteAgentRuntime", http.MethodDelete, "/runtimes/shapes/", nil)
}

func ptrTo[T any](v T) *T { return &v }

// TestGetUpdateRoundTrip: the common read-modify-write through boto3,
// get_agent_runtime then update_agent_runtime with what the get returned,
// works for a runtime created through the API, and is refused with a clear
// ValidationException (not a KeyError) for one the config file declares.
func TestGetUpdateRoundTrip(t *testing.T) {
	t.Parallel()
	python := requireBoto3(t)
	codeRoot := t.TempDir()
	agentDir := filepath.Join(codeRoot, "agent")
	os.MkdirAll(agentDir, 0o755)
	os.WriteFile(filepath.Join(agentDir, "main.py"), []byte("print('hi')\n"), 0o644)
	b, _ := tutorialBerthWith(t, func(c *config.Config) { c.CodeRoots = []string{codeRoot} })
	script := `import boto3, json, sys
ctl = boto3.client("bedrock-agentcore-control", endpoint_url=sys.argv[1])
created = ctl.create_agent_runtime(agentRuntimeName="roundtrip",
    agentRuntimeArtifact={"codeConfiguration": {"code": {"s3": {"bucket": "berth-local", "prefix": sys.argv[2]}},
        "runtime": "PYTHON_3_12", "entryPoint": ["main.py"]}},
    roleArn="arn:aws:iam::123456789012:role/agent", networkConfiguration={"networkMode": "PUBLIC"})
out = {}
for rid in (created["agentRuntimeId"], "tutorial"):
    g = ctl.get_agent_runtime(agentRuntimeId=rid)
    try:
        u = ctl.update_agent_runtime(agentRuntimeId=rid, agentRuntimeArtifact=g["agentRuntimeArtifact"],
            roleArn=g["roleArn"] or "arn:aws:iam::123456789012:role/agent", networkConfiguration=g["networkConfiguration"],
            description="updated")
        out[rid] = {"version": u["agentRuntimeVersion"]}
    except ctl.exceptions.ValidationException as e:
        out[rid] = {"error": "ValidationException", "message": str(e)}
print(json.dumps(out))`
	cmd := exec.Command(python, "-c", script, b.d.URL(), agentDir)
	cmd.Env = clientEnv()
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("boto3 round trip: %v: %s", err, stderr)
	}
	var got map[string]map[string]string
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("%s: %v", out, err)
	}
	for rid, r := range got {
		switch {
		case rid == "tutorial":
			if r["error"] != "ValidationException" || !strings.Contains(r["message"], "config file") {
				t.Errorf("updating the config runtime: %v, want a ValidationException naming the config file", r)
			}
		case r["version"] != "2":
			t.Errorf("get → update of an API runtime: %v, want version 2", r)
		}
	}
}
