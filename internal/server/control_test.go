package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/registry"
	"github.com/berth-dev/berth/internal/sandbox"
)

// decodeCases are decodeControlBody's table, and seeds for fuzzing.
var decodeCases = []struct {
	name   string
	body   string
	field  string // a ValidationException naming it; "-" one naming none
	reason string
}{
	{"empty", "", "", ""},
	{"blank", " \r\n\t", "", ""},
	{"null", "null", "", ""},
	{"oversize", `{"description":"` + strings.Repeat("d", maxControlBody) + `"}`, "body", "FieldValidationFailed"},
	{"malformed", `{"agentRuntimeName":`, "-", "CannotParse"},
	{"not an object", `["agent"]`, "-", "CannotParse"},
	{"trailing garbage", `{} x`, "-", "CannotParse"},
	{"a string for a string list", `{"agentRuntimeArtifact":{"codeConfiguration":{"entryPoint":"main.py"}}}`,
		"agentRuntimeArtifact.codeConfiguration.entryPoint", "CannotParse"},
	{"a number for a string", `{"agentRuntimeName":5}`, "agentRuntimeName", "CannotParse"},
	{"a string for a number", `{"lifecycleConfiguration":{"maxLifetime":"8h"}}`, "lifecycleConfiguration.maxLifetime", "CannotParse"},
	{"an object for a map value", `{"environmentVariables":{"A":{}}}`, "environmentVariables", "CannotParse"},
	{"a float for an int", `{"berthSettings":{"sessions":{"queueSize":1.5}}}`, "berthSettings.sessions.queueSize", "CannotParse"},
}

func TestDecodeControlBody(t *testing.T) {
	for _, tc := range decodeCases {
		t.Run(tc.name, func(t *testing.T) {
			var in api.RuntimeInput
			err := decodeControlBody(newRequest("PUT", "/runtimes/", strings.NewReader(tc.body)), &in)
			if tc.field == "" {
				if err != nil {
					t.Fatal(err)
				}
				if in.AgentRuntimeName != "" || in.AgentRuntimeArtifact != nil {
					t.Fatalf("an empty body decoded as %+v", in)
				}
				return
			}
			var ae *apiError
			if !errors.As(err, &ae) || ae.typ != api.ErrValidation || ae.reason != tc.reason {
				t.Fatalf("got %v (%+v)", err, ae)
			}
			if tc.field == "-" {
				if len(ae.fields) != 0 {
					t.Fatalf("fields %+v", ae.fields)
				}
				return
			}
			if len(ae.fields) != 1 || ae.fields[0].Name != tc.field {
				t.Fatalf("fields %+v, want %s", ae.fields, tc.field)
			}
		})
	}
	// The cap is on what was sent, so exactly maxControlBody bytes pass.
	body := `{"description":"` + strings.Repeat("d", maxControlBody-len(`{"description":""}`)) + `"}`
	var in api.RuntimeInput
	if err := decodeControlBody(newRequest("PUT", "/runtimes/", strings.NewReader(body)), &in); err != nil || len(body) != maxControlBody {
		t.Fatalf("%d bytes: %v", len(body), err)
	}
}

// specRefusals are runtimeSpec's refusals, and seeds for fuzzing.
var specRefusals = []struct {
	body  string
	field string
}{
	{`{"authorizerConfiguration":{}}`, "authorizerConfiguration"},
	{`{"hooksConfiguration":{}}`, "hooksConfiguration"},
	{`{"filesystemConfigurations":[{}]}`, "filesystemConfigurations[0]"},
	{`{"filesystemConfigurations":[{"efsAccessPoint":{"accessPointArn":"x"}}]}`, "filesystemConfigurations[0]"},
	{`{"filesystemConfigurations":[{"sessionStorage":{"mountPath":"/mnt/a"}},{"sessionStorage":{"mountPath":"/mnt/b"}}]}`, "filesystemConfigurations[1]"},
	{`{"filesystemConfigurations":[{},{},{},{},{},{}]}`, "filesystemConfigurations"},
	{`{"platformVersion":"V3"}`, "platformVersion"},
	{`{"metadataConfiguration":{}}`, "metadataConfiguration"},
	{`{"capacityProviderConfiguration":{}}`, "capacityProviderConfiguration"},
	{`{"allowedPorts":[8080]}`, "allowedPorts"},
	{`{"clientToken":""}`, "clientToken"},
	{`{"clientToken":"short"}`, "clientToken"},
	{`{"clientToken":"` + strings.Repeat("a", 32) + `_"}`, "clientToken"},
	{`{"networkConfiguration":{}}`, "networkConfiguration.networkMode"},
	{`{"protocolConfiguration":{"serverProtocol":"HTTP","port":9000}}`, "protocolConfiguration"},
	{`{"protocolConfiguration":{"serverProtocol":"MCP","path":"/rpc"}}`, "protocolConfiguration"},
	{`{"protocolConfiguration":{}}`, "protocolConfiguration.serverProtocol"},
	{`{"lifecycleConfiguration":{"idleRuntimeSessionTimeout":0}}`, "lifecycleConfiguration.idleRuntimeSessionTimeout"},
	{`{"lifecycleConfiguration":{"maxLifetime":-60}}`, "lifecycleConfiguration.maxLifetime"},
	{`{"requestHeaderConfiguration":{"requestHeaderAllowlist":[]}}`, "requestHeaderConfiguration.requestHeaderAllowlist"},
}

func TestRuntimeSpecRefusals(t *testing.T) {
	for _, tc := range specRefusals {
		var in api.RuntimeInput
		if err := json.Unmarshal([]byte(tc.body), &in); err != nil {
			t.Fatal(err)
		}
		_, err := runtimeSpec(&in)
		wantValidation(t, err, tc.field)
	}
}

// runtimeSpec carries every member into the registry's terms; the
// rulebook, not the translation, judges the values.
// fullBody sets every member runtimeSpec reads.
const fullBody = `{
		"agentRuntimeName": "agent",
		"description": "d",
		"roleArn": "arn:aws:iam::123456789012:role/r",
		"clientToken": "ccccccccccccccccccccccccccccccccc",
		"agentRuntimeArtifact": {"codeConfiguration": {"code": {"s3": {"bucket": "berth-local", "prefix": "/srv/agent", "versionId": "v"}},
			"runtime": "PYTHON_3_12", "entryPoint": ["main.py", "--x"]}},
		"networkConfiguration": {"networkMode": "PUBLIC"},
		"protocolConfiguration": {"serverProtocol": "MCP"},
		"lifecycleConfiguration": {"idleRuntimeSessionTimeout": 120, "maxLifetime": 3600},
		"requestHeaderConfiguration": {"requestHeaderAllowlist": ["X-Tenant-Id"]},
		"environmentVariables": {"A": "1"},
		"filesystemConfigurations": [{"sessionStorage": {"mountPath": "/mnt/workspace"}}],
		"authorizerConfiguration": null,
		"berthSettings": {
			"sandbox": "process", "network": "host", "mounts": [{"source": "/a", "target": "/b", "readOnly": true}],
			"limits": {"memoryBytes": 1024, "cpu": 0.5, "pids": 7, "diskBytes": 2048},
			"sessions": {"concurrency": "queue", "queueSize": 3, "queueTimeoutSeconds": 1.5, "bindUser": true, "maxSessionsPerUser": 2,
				"durability": "state", "stateMaxBytes": 4096, "suspendAfterSeconds": 90, "warmPool": 1}
		}
	}`

func TestRuntimeSpecTranslation(t *testing.T) {
	var in api.RuntimeInput
	if err := decodeControlBody(newRequest("PUT", "/runtimes/", strings.NewReader(fullBody)), &in); err != nil {
		t.Fatal(err)
	}
	spec, err := runtimeSpec(&in)
	if err != nil {
		t.Fatal(err)
	}
	c := spec.Artifact.Code
	if *spec.Description != "d" || spec.RoleARN != "arn:aws:iam::123456789012:role/r" || spec.NetworkMode != "PUBLIC" ||
		spec.Artifact.ContainerURI != "" || c.Bucket != api.LocalBucket || c.Prefix != "/srv/agent" || c.VersionID != "v" ||
		c.Runtime != "PYTHON_3_12" || !slices.Equal(c.EntryPoint, []string{"main.py", "--x"}) {
		t.Fatalf("spec %+v, code %+v", spec, c)
	}
	want := registry.Settings{
		Env:             map[string]string{"A": "1"},
		Sandbox:         registry.BackendProcess,
		IdleTimeout:     registry.Duration(120 * time.Second),
		MaxLifetime:     registry.Duration(time.Hour),
		HeaderAllowlist: []string{"X-Tenant-Id"},
		Protocol:        registry.ProtocolMCP,
		SessionStorage:  "/mnt/workspace",
		Network:         sandbox.NetworkHost,
		Limits:          registry.Limits{Memory: 1024, CPU: 500, Pids: 7, Disk: 2048},
		Mounts:          []sandbox.Mount{{Source: "/a", Target: "/b", ReadOnly: true}},
		Sessions: registry.SessionPolicy{Concurrency: registry.ConcurrencyQueue, QueueSize: 3, QueueTimeout: registry.Duration(1500 * time.Millisecond),
			BindUser: true, MaxSessionsPerUser: 2, Durability: registry.DurabilityState, StateMaxBytes: 4096,
			SuspendAfter: registry.Duration(90 * time.Second), WarmPool: 1},
	}
	got, _ := json.Marshal(spec.Settings)
	exp, _ := json.Marshal(want)
	if !bytes.Equal(got, exp) {
		t.Fatalf("settings\n got %s\nwant %s", got, exp)
	}
	// An empty container URI still asks for a container.
	in = api.RuntimeInput{AgentRuntimeArtifact: &api.Artifact{Container: &api.ContainerConfiguration{}}}
	if spec, err := runtimeSpec(&in); err != nil || spec.Artifact.ContainerURI == "" {
		t.Fatalf("empty container: %+v %v", spec.Artifact, err)
	}
}

// controlReq builds a control-plane request with a JSON body.
func controlReq(method, path string, body any) *http.Request {
	var b []byte
	if body != nil {
		b, _ = json.Marshal(body)
	}
	r := newRequest(method, path, bytes.NewReader(b))
	r.Header.Set("Content-Type", "application/json")
	return r
}

func agentDir(t *testing.T) string {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.py"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// The control plane's handlers: status codes, paths and members as the
// AWS SDKs use them, and refusals as ValidationExceptions naming the
// member.
func TestControlHandlers(t *testing.T) {
	h := newHarness(t)
	dir := agentDir(t)
	create := api.RuntimeInput{AgentRuntimeName: "made", AgentRuntimeArtifact: api.LocalCode(dir, "PYTHON_3_12", "main.py"),
		LifecycleConfiguration: &api.Lifecycle{MaxLifetime: ptr(600)}}
	w := h.do(controlReq("PUT", "/runtimes/", create))
	var made api.AgentRuntime
	if w.Code != http.StatusAccepted || json.Unmarshal(w.Body.Bytes(), &made) != nil || made.AgentRuntimeVersion != "1" ||
		made.Status != api.StatusReady || !strings.HasPrefix(made.AgentRuntimeID, "made-") || made.WorkloadIdentityDetails == nil {
		t.Fatalf("create: %d %s", w.Code, w.Body)
	}
	w = h.do(newRequest("GET", "/runtimes/"+url.PathEscape(made.AgentRuntimeArn)+"/", nil))
	var got api.AgentRuntime
	if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &got) != nil || got.AgentRuntimeName != "made" || got.BerthSource != "api" ||
		*got.LifecycleConfiguration.MaxLifetime != 600 || *got.LifecycleConfiguration.IdleRuntimeSessionTimeout != 600 ||
		got.AgentRuntimeArtifact.Code.Code.S3.Prefix != dir || got.BerthSettings.Sandbox != "process" ||
		len(got.BerthCommand) != 2 || !strings.HasPrefix(got.BerthCommand[0], "python3") || got.BerthCommand[1] != "main.py" {
		t.Fatalf("get: %d %s", w.Code, w.Body)
	}

	for _, tc := range []struct {
		name  string
		req   *http.Request
		typ   api.ErrorType
		field string
	}{
		{"create without a name", controlReq("PUT", "/runtimes/", api.RuntimeInput{AgentRuntimeArtifact: create.AgentRuntimeArtifact}),
			api.ErrValidation, "agentRuntimeName"},
		{"create a taken name", controlReq("PUT", "/runtimes/", create), api.ErrConflict, ""},
		{"create with a sandbox", controlReq("PUT", "/runtimes/", api.RuntimeInput{AgentRuntimeName: "x", AgentRuntimeArtifact: create.AgentRuntimeArtifact,
			BerthSettings: &api.BerthSettings{Sandbox: "linux"}}), api.ErrValidation, "berthSettings.sandbox"},
		{"create with a wrong type", newRequest("PUT", "/runtimes/", strings.NewReader(`{"agentRuntimeName":["x"]}`)),
			api.ErrValidation, "agentRuntimeName"},
		{"update a config runtime", controlReq("PUT", "/runtimes/"+h.rt.ID+"/", create), api.ErrValidation, "agentRuntimeId"},
		{"update without an artifact", controlReq("PUT", "/runtimes/"+made.AgentRuntimeID+"/", api.RuntimeInput{}), api.ErrValidation, "agentRuntimeArtifact"},
		{"get a bad version", newRequest("GET", "/runtimes/"+made.AgentRuntimeID+"/?version=latest", nil), api.ErrValidation, "version"},
		{"get an unknown runtime", newRequest("GET", "/runtimes/ghost/", nil), api.ErrResourceNotFound, ""},
		{"delete a version", newRequest("DELETE", "/runtimes/"+made.AgentRuntimeID+"/?version=1", nil), api.ErrValidation, "version"},
		{"delete with a bad token", newRequest("DELETE", "/runtimes/"+made.AgentRuntimeID+"/?clientToken=x", nil), api.ErrValidation, "clientToken"},
		{"delete a config runtime", newRequest("DELETE", "/runtimes/"+h.rt.ID+"/", nil), api.ErrValidation, "agentRuntimeId"},
		{"list 0", newRequest("POST", "/runtimes/?maxResults=0", nil), api.ErrValidation, "maxResults"},
		{"list 101", newRequest("POST", "/runtimes/?maxResults=101", nil), api.ErrValidation, "maxResults"},
		{"list with a bad token", newRequest("POST", "/runtimes/?nextToken=zzz", nil), api.ErrValidation, "nextToken"},
		{"endpoint without a name", controlReq("PUT", "/runtimes/"+made.AgentRuntimeID+"/runtime-endpoints/", api.EndpointInput{}), api.ErrValidation, "name"},
		{"endpoint with an empty version", controlReq("PUT", "/runtimes/"+made.AgentRuntimeID+"/runtime-endpoints/",
			api.EndpointInput{Name: "e", AgentRuntimeVersion: ptr("")}), api.ErrValidation, "agentRuntimeVersion"},
		{"endpoint with a future version", controlReq("PUT", "/runtimes/"+made.AgentRuntimeID+"/runtime-endpoints/",
			api.EndpointInput{Name: "e", AgentRuntimeVersion: ptr("2")}), api.ErrValidation, "agentRuntimeVersion"},
		{"move DEFAULT", controlReq("PUT", "/runtimes/"+made.AgentRuntimeID+"/runtime-endpoints/DEFAULT/", api.EndpointInput{AgentRuntimeVersion: ptr("1")}),
			api.ErrValidation, "endpointName"},
		{"an unknown endpoint", newRequest("GET", "/runtimes/"+made.AgentRuntimeID+"/runtime-endpoints/ghost/", nil), api.ErrResourceNotFound, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := readError(t, h.do(tc.req))
			if e.typ != tc.typ || (tc.field != "" && (len(e.body.FieldList) != 1 || e.body.FieldList[0].Name != tc.field)) {
				t.Fatalf("got %+v, want %s on %q", e, tc.typ, tc.field)
			}
		})
	}

	// Endpoints: create answers with endpointName and targetVersion.
	w = h.do(controlReq("PUT", "/runtimes/"+made.AgentRuntimeID+"/runtime-endpoints/", api.EndpointInput{Name: "prod", AgentRuntimeVersion: ptr("1")}))
	var e api.Endpoint
	if w.Code != http.StatusAccepted || json.Unmarshal(w.Body.Bytes(), &e) != nil || e.EndpointName != "prod" || e.TargetVersion != "1" || e.Name != "" {
		t.Fatalf("create endpoint: %d %s", w.Code, w.Body)
	}
	w = h.do(newRequest("POST", "/runtimes/"+made.AgentRuntimeID+"/runtime-endpoints/", nil))
	var es api.EndpointList
	if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &es) != nil || len(es.RuntimeEndpoints) != 2 || es.RuntimeEndpoints[1].Name != "prod" {
		t.Fatalf("list endpoints: %d %s", w.Code, w.Body)
	}
	w = h.do(newRequest("DELETE", "/runtimes/"+made.AgentRuntimeID+"/", nil))
	var del api.DeleteResult
	if w.Code != http.StatusAccepted || json.Unmarshal(w.Body.Bytes(), &del) != nil || del.Status != api.StatusDeleting || del.AgentRuntimeID != made.AgentRuntimeID {
		t.Fatalf("delete: %d %s", w.Code, w.Body)
	}
}

func ptr[T any](v T) *T { return &v }
