package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/client"
	"github.com/berth-dev/berth/internal/registry"
	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"
)

func newRuntimes() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "runtimes",
		Short: "Manage agent runtimes through the control plane (bedrock-agentcore-control)",
		Long: `Create, change, inspect and delete agent runtimes and their endpoints.

berth serves the runtime calls of AgentCore's control plane, so the AWS SDKs
and these commands see the same runtimes, including those declared in the
config file (which only the config file may change). A runtime runs code
from a directory on the berth host: --code names it, --entry-point what to
run in it (a .py or .js script, an executable, or a wrapper plus a script).`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newRuntimesList(), newRuntimesShow(), newRuntimesCreate(), newRuntimesUpdate(),
		newRuntimesDelete(), newRuntimesVersions(), newEndpoints())
	return cmd
}

// outputFlags are the client flags plus the output format: -o
// table|json|yaml, with --json for -o json.
type outputFlags struct {
	clientFlags
	json   bool
	output outputFormat
}

func (f *outputFlags) register(cmd *cobra.Command) {
	f.clientFlags.register(cmd)
	f.output = "table"
	cmd.Flags().VarP(&f.output, "output", "o", "output format: table, json (the API's answer) or yaml")
	cmd.Flags().BoolVar(&f.json, "json", false, "the same as -o json")
	cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]cobra.Completion{"table", "json", "yaml"}, cobra.ShellCompDirectiveNoFileComp))
}

// structured reports whether the answer is printed as data (JSON or
// YAML) rather than as a table.
func (f *outputFlags) structured() bool { return f.json || f.output != "table" }

// print prints v as JSON or YAML.
func (f *outputFlags) print(w io.Writer, v any) error {
	if f.json || f.output == "json" {
		return printJSON(w, v)
	}
	// Through JSON, so YAML has the API's field names.
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	var generic any
	if err := json.Unmarshal(data, &generic); err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(generic); err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	return enc.Close()
}

// outputFormat is -o's value, checked as it is set.
type outputFormat string

func (o *outputFormat) String() string { return string(*o) }
func (o *outputFormat) Type() string   { return "format" }
func (o *outputFormat) Set(v string) error {
	switch v {
	case "table", "json", "yaml":
		*o = outputFormat(v)
		return nil
	}
	return fmt.Errorf("%q: want table, json or yaml", v)
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func table(w io.Writer, header ...string) *tabwriter.Writer {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	return tw
}

func when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format(time.DateTime)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newRuntimesList() *cobra.Command {
	var (
		of    outputFlags
		quiet bool
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List runtimes (ListAgentRuntimes)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rts, err := of.client().AllRuntimes(cmd.Context())
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if of.structured() {
				return of.print(w, map[string]any{"agentRuntimes": rts})
			}
			if quiet {
				for _, rt := range rts {
					fmt.Fprintln(w, rt.AgentRuntimeName)
				}
				return nil
			}
			tw := table(w, "NAME", "ID", "VERSION", "STATUS", "SOURCE", "UPDATED")
			for _, rt := range rts {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", rt.AgentRuntimeName, rt.AgentRuntimeID, rt.AgentRuntimeVersion, rt.Status, dash(rt.BerthSource), when(rt.LastUpdatedAt))
			}
			return tw.Flush()
		},
	}
	of.register(cmd)
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only the runtimes' names")
	return cmd
}

func newRuntimesShow() *cobra.Command {
	var (
		of      outputFlags
		version string
	)
	cmd := &cobra.Command{
		Use:               "show RUNTIME",
		ValidArgsFunction: completeRuntimeArg(&of.clientFlags),
		Short:             "Show a runtime and its endpoints (GetAgentRuntime)",
		Args:              cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := of.client()
			rt, err := c.GetRuntime(cmd.Context(), args[0], version)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if of.structured() {
				return of.print(w, rt)
			}
			eps, err := c.AllEndpoints(cmd.Context(), rt.AgentRuntimeID)
			if err != nil {
				return err
			}
			printRuntime(w, rt, eps)
			return nil
		},
	}
	of.register(cmd)
	cmd.Flags().StringVar(&version, "version", "", "version to show (default the latest)")
	return cmd
}

func printRuntime(w io.Writer, rt *client.Runtime, eps []client.Endpoint) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, v) }
	row("Name", rt.AgentRuntimeName)
	row("ID", rt.AgentRuntimeID)
	row("ARN", rt.AgentRuntimeArn)
	row("Version", rt.AgentRuntimeVersion)
	row("Status", rt.Status)
	row("Source", dash(rt.BerthSource))
	row("Description", dash(rt.Description))
	row("Created", when(rt.CreatedAt))
	row("Updated", when(rt.LastUpdatedAt))
	if a := rt.AgentRuntimeArtifact; a != nil && a.Code != nil && a.Code.Code != nil && a.Code.Code.S3 != nil {
		row("Code", a.Code.Code.S3.Prefix)
		row("Code runtime", a.Code.Runtime)
		row("Entry point", strings.Join(a.Code.EntryPoint, " "))
	}
	row("Command", strings.Join(rt.BerthCommand, " "))
	row("Workdir", dash(rt.BerthWorkdir))
	if p := rt.ProtocolConfiguration; p != nil {
		row("Protocol", p.ServerProtocol)
	}
	if l := rt.LifecycleConfiguration; l != nil {
		for _, f := range []struct {
			name string
			v    *int
		}{{"Idle timeout", l.IdleRuntimeSessionTimeout}, {"Max lifetime", l.MaxLifetime}} {
			if f.v != nil {
				row(f.name, (time.Duration(*f.v) * time.Second).String())
			}
		}
	}
	if h := rt.RequestHeaderConfiguration; h != nil {
		row("Header allowlist", strings.Join(h.RequestHeaderAllowlist, ", "))
	}
	for _, k := range slices.Sorted(maps.Keys(rt.EnvironmentVariables)) {
		row("Env", k+"="+rt.EnvironmentVariables[k])
	}
	if b := rt.BerthSettings; b != nil {
		row("Sandbox", dash(b.Sandbox)+", network "+dash(b.Network))
		if l := b.Limits; l != nil {
			row("Limits", fmt.Sprintf("memory %d bytes, cpu %g, pids %d, disk %d bytes", l.MemoryBytes, l.CPU, l.Pids, l.DiskBytes))
		}
		if p := b.Sessions; p != nil {
			row("Sessions", fmt.Sprintf("concurrency %s, durability %s, warm pool %d, bind user %t", dash(p.Concurrency), dash(p.Durability), p.WarmPool, p.BindUser))
		}
	}
	if rt.RoleArn != "" {
		row("Role ARN", rt.RoleArn)
	}
	tw.Flush()
	if len(eps) == 0 {
		return
	}
	fmt.Fprintln(w)
	printEndpoints(w, eps)
}

func printEndpoints(w io.Writer, eps []client.Endpoint) {
	tw := table(w, "ENDPOINT", "LIVE", "TARGET", "STATUS", "UPDATED", "DESCRIPTION")
	for _, e := range eps {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e.Name, e.LiveVersion, e.TargetVersion, e.Status, when(e.LastUpdatedAt), dash(e.Description))
	}
	tw.Flush()
}

// specFlags are the settings create and update share.
type specFlags struct {
	code, codeRuntime, protocol, description, roleARN string
	entryPoint, env, unsetEnv, allowHeaders           []string
	memory, disk, concurrency, durability             string
	cpu                                               float64
	pids                                              int64
	warmPool                                          int
	bindUser                                          bool
	idle, maxLife                                     string
}

func (f *specFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.code, "code", "", "the agent's directory on the berth host")
	fl.StringArrayVar(&f.entryPoint, "entry-point", nil, "what to run in --code: a script (main.py, index.js), an executable, or a wrapper then a script (repeat for two entries)")
	fl.StringVar(&f.codeRuntime, "code-runtime", "", "PYTHON_3_10 to PYTHON_3_14 or NODE_22 (default from the entry point: NODE_22 for .js, else PYTHON_3_12)")
	fl.StringVar(&f.protocol, "protocol", "", "HTTP, MCP, A2A or AGUI (default HTTP)")
	fl.StringVar(&f.description, "description", "", "description")
	fl.StringVar(&f.roleARN, "role-arn", "", "execution role ARN to record (berth only echoes it)")
	fl.StringArrayVarP(&f.env, "env", "e", nil, "environment variable KEY=VALUE (repeatable)")
	fl.StringArrayVar(&f.allowHeaders, "allow-header", nil, "request header to forward to the agent (repeatable)")
	fl.StringVar(&f.idle, "idle-timeout", "", "idle session timeout: 15m, 900s or seconds (60-28800; default 900)")
	fl.StringVar(&f.maxLife, "max-lifetime", "", "session max lifetime: 8h or seconds (60-28800; default 28800)")
	fl.StringVar(&f.memory, "memory", "", "memory per session sandbox: 512Mi, 2Gi (up to the operator's ceiling)")
	fl.Float64Var(&f.cpu, "cpu", 0, "CPU cores per session sandbox (up to the operator's ceiling)")
	fl.Int64Var(&f.pids, "pids", 0, "processes per session sandbox (up to the operator's ceiling)")
	fl.StringVar(&f.disk, "disk", "", "scratch disk per session sandbox: 1Gi (up to the operator's ceiling)")
	fl.StringVar(&f.concurrency, "concurrency", "", "overlapping calls into one session: allow, reject or queue")
	fl.StringVar(&f.durability, "durability", "", "none, or state: the agent's saved state outlives its sandbox")
	fl.IntVar(&f.warmPool, "warm-pool", 0, "started sandboxes kept ready for new sessions")
	fl.BoolVar(&f.bindUser, "bind-user", false, "bind each session to the first runtime user ID that calls it")
}

// apply writes the flags the user set onto in.
func (f *specFlags) apply(cmd *cobra.Command, in *client.RuntimeInput) error {
	fl := cmd.Flags()
	var code *api.CodeConfiguration
	if in.AgentRuntimeArtifact != nil {
		code = in.AgentRuntimeArtifact.Code
	}
	if code == nil {
		code = &api.CodeConfiguration{}
	}
	if fl.Changed("code") {
		dir, err := filepath.Abs(f.code)
		if err != nil {
			return fmt.Errorf("--code: %w", err)
		}
		code.Code = &api.CodeLocation{S3: &api.S3Location{Bucket: api.LocalBucket, Prefix: dir}}
	}
	if fl.Changed("entry-point") {
		code.EntryPoint = f.entryPoint
	}
	switch {
	case fl.Changed("code-runtime"):
		code.Runtime = strings.ToUpper(f.codeRuntime)
	case code.Runtime == "" && len(code.EntryPoint) > 0:
		code.Runtime = "PYTHON_3_12"
		switch filepath.Ext(code.EntryPoint[len(code.EntryPoint)-1]) {
		case ".js", ".mjs", ".cjs":
			code.Runtime = "NODE_22"
		}
	}
	in.AgentRuntimeArtifact = &api.Artifact{Code: code}
	if fl.Changed("protocol") {
		in.ProtocolConfiguration = &api.ProtocolConfiguration{ServerProtocol: strings.ToUpper(f.protocol)}
	}
	if fl.Changed("description") {
		in.Description = &f.description
	}
	if fl.Changed("role-arn") {
		in.RoleArn = f.roleARN
	}
	for _, kv := range f.env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return fmt.Errorf("--env %q: want KEY=VALUE", kv)
		}
		if in.EnvironmentVariables == nil {
			in.EnvironmentVariables = map[string]string{}
		}
		in.EnvironmentVariables[k] = v
	}
	for _, k := range f.unsetEnv {
		delete(in.EnvironmentVariables, k)
	}
	if fl.Changed("allow-header") {
		in.RequestHeaderConfiguration = &api.RequestHeaderConfiguration{RequestHeaderAllowlist: f.allowHeaders}
	}
	if fl.Changed("idle-timeout") || fl.Changed("max-lifetime") {
		if in.LifecycleConfiguration == nil {
			in.LifecycleConfiguration = &api.Lifecycle{}
		}
		for _, d := range []struct {
			flag, val string
			dst       **int
		}{
			{"idle-timeout", f.idle, &in.LifecycleConfiguration.IdleRuntimeSessionTimeout},
			{"max-lifetime", f.maxLife, &in.LifecycleConfiguration.MaxLifetime},
		} {
			if !fl.Changed(d.flag) {
				continue
			}
			n, err := seconds(d.val)
			if err != nil {
				return fmt.Errorf("--%s: %w", d.flag, err)
			}
			*d.dst = &n
		}
	}
	return f.applyBerth(cmd, in)
}

// applyBerth writes berth's own settings (limits and session policy) the
// user set onto in.
func (f *specFlags) applyBerth(cmd *cobra.Command, in *client.RuntimeInput) error {
	fl := cmd.Flags()
	changed := func(names ...string) bool {
		for _, n := range names {
			if fl.Changed(n) {
				return true
			}
		}
		return false
	}
	if !changed("memory", "cpu", "pids", "disk", "concurrency", "durability", "warm-pool", "bind-user") {
		return nil
	}
	if in.BerthSettings == nil {
		in.BerthSettings = &api.BerthSettings{}
	}
	b := in.BerthSettings
	b.Sandbox, b.Network, b.Mounts = "", "", nil // the operator's alone
	if changed("memory", "cpu", "pids", "disk") {
		if b.Limits == nil {
			b.Limits = &api.Limits{}
		}
		for _, sz := range []struct {
			flag, val string
			dst       *int64
		}{{"memory", f.memory, &b.Limits.MemoryBytes}, {"disk", f.disk, &b.Limits.DiskBytes}} {
			if !fl.Changed(sz.flag) {
				continue
			}
			n, err := registry.ParseBytes(sz.val)
			if err != nil {
				return fmt.Errorf("--%s: %w", sz.flag, err)
			}
			*sz.dst = n
		}
		if fl.Changed("cpu") {
			b.Limits.CPU = f.cpu
		}
		if fl.Changed("pids") {
			b.Limits.Pids = f.pids
		}
	}
	if changed("concurrency", "durability", "warm-pool", "bind-user") {
		if b.Sessions == nil {
			b.Sessions = &api.SessionPolicy{}
		}
		if fl.Changed("concurrency") {
			b.Sessions.Concurrency = f.concurrency
		}
		if fl.Changed("durability") {
			b.Sessions.Durability = f.durability
		}
		if fl.Changed("warm-pool") {
			b.Sessions.WarmPool = f.warmPool
		}
		if fl.Changed("bind-user") {
			b.Sessions.BindUser = f.bindUser
		}
	}
	return nil
}

// seconds reads "15m", "90s" or a plain number of seconds.
func seconds(s string) (int, error) {
	if n, err := strconv.Atoi(s); err == nil {
		return n, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (15m, 90s or seconds)", s)
	}
	return int(d / time.Second), nil
}

func newRuntimesCreate() *cobra.Command {
	var (
		of   outputFlags
		sf   specFlags
		tags []string
	)
	cmd := &cobra.Command{
		Use:   "create NAME --code DIR --entry-point FILE [flags]",
		Short: "Create a runtime (CreateAgentRuntime)",
		Example: `  berth runtimes create tutorial --code ./agent --entry-point main.py -e MODEL=claude
  berth runtimes create gobot --code ./bin --entry-point agent --idle-timeout 5m`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			in := client.RuntimeInput{AgentRuntimeName: args[0], NetworkConfiguration: &api.NetworkConfiguration{NetworkMode: "PUBLIC"}}
			if err := sf.apply(cmd, &in); err != nil {
				return err
			}
			in.Tags = map[string]string{}
			for _, kv := range tags {
				k, v, ok := strings.Cut(kv, "=")
				if !ok || k == "" {
					return fmt.Errorf("--tag %q: want KEY=VALUE", kv)
				}
				in.Tags[k] = v
			}
			rt, err := of.client().CreateRuntime(cmd.Context(), in)
			if err != nil {
				return err
			}
			if of.structured() {
				return of.print(cmd.OutOrStdout(), rt)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "created runtime %s version %s (%s)\n%s\n", rt.AgentRuntimeID, rt.AgentRuntimeVersion, rt.Status, rt.AgentRuntimeArn)
			return nil
		},
	}
	of.register(cmd)
	sf.register(cmd)
	cmd.Flags().StringArrayVar(&tags, "tag", nil, "tag KEY=VALUE (repeatable)")
	cmd.MarkFlagRequired("code")
	cmd.MarkFlagRequired("entry-point")
	return cmd
}

func newRuntimesUpdate() *cobra.Command {
	var (
		of outputFlags
		sf specFlags
	)
	cmd := &cobra.Command{
		Use:   "update RUNTIME [flags]",
		Short: "Make a runtime's next version (UpdateAgentRuntime)",
		Long: `Make a runtime's next version: the latest version's settings with the
flags given applied on top. DEFAULT moves to the new version; live sessions
keep the version they started on.`,
		Example: `  berth runtimes update tutorial -e MODEL=claude-opus
  berth runtimes update tutorial --code ./agent-v2 --unset-env DEBUG`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := of.client()
			cur, err := c.GetRuntime(cmd.Context(), args[0], "")
			if err != nil {
				return err
			}
			in := inputFrom(cur)
			if err := sf.apply(cmd, &in); err != nil {
				return err
			}
			rt, err := c.UpdateRuntime(cmd.Context(), cur.AgentRuntimeID, in)
			if err != nil {
				return err
			}
			if of.structured() {
				return of.print(cmd.OutOrStdout(), rt)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "updated runtime %s to version %s (%s)\n", rt.AgentRuntimeID, rt.AgentRuntimeVersion, rt.Status)
			return nil
		},
	}
	of.register(cmd)
	sf.register(cmd)
	cmd.Flags().StringArrayVar(&sf.unsetEnv, "unset-env", nil, "environment variable to remove (repeatable)")
	return cmd
}

// inputFrom turns a runtime's latest version back into an update request.
func inputFrom(rt *client.Runtime) client.RuntimeInput {
	in := client.RuntimeInput{
		AgentRuntimeArtifact:       rt.AgentRuntimeArtifact,
		RoleArn:                    rt.RoleArn,
		NetworkConfiguration:       rt.NetworkConfiguration,
		ProtocolConfiguration:      rt.ProtocolConfiguration,
		LifecycleConfiguration:     rt.LifecycleConfiguration,
		RequestHeaderConfiguration: rt.RequestHeaderConfiguration,
		EnvironmentVariables:       maps.Clone(rt.EnvironmentVariables),
		BerthSettings:              rt.BerthSettings,
	}
	if b := in.BerthSettings; b != nil {
		b.Sandbox, b.Network, b.Mounts = "", "", nil // the operator's alone
	}
	return in
}

func newRuntimesDelete() *cobra.Command {
	var (
		of  outputFlags
		yes bool
	)
	cmd := &cobra.Command{
		Use:               "delete RUNTIME",
		ValidArgsFunction: completeRuntimeArg(&of.clientFlags),
		Short:             "Delete a runtime, ending its live sessions (DeleteAgentRuntime)",
		Long: `Delete a runtime, ending its live sessions. It asks first, on a terminal;
elsewhere (a script) it needs --yes.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !yes {
				if err := confirm(cmd, "Delete runtime "+args[0]+" and end its live sessions?"); err != nil {
					return err
				}
			}
			// Deleting ends the runtime's live sessions first.
			stop := progress(cmd.ErrOrStderr(), isTerminal(cmd.ErrOrStderr()), "deleting "+args[0])
			err := of.client().DeleteRuntime(cmd.Context(), args[0])
			stop()
			if err != nil {
				return err
			}
			if of.structured() {
				return of.print(cmd.OutOrStdout(), map[string]string{"status": api.StatusDeleting})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleted runtime %s\n", args[0])
			return nil
		},
	}
	of.register(cmd)
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask")
	return cmd
}

// errNotConfirmed is a destructive command the user did not confirm.
var errNotConfirmed = errors.New("not confirmed")

// confirm asks question on the terminal and wants y or yes. Without a
// terminal to ask on, it refuses: scripts say --yes.
func confirm(cmd *cobra.Command, question string) error {
	in := cmd.InOrStdin()
	if !isTerminal(in) {
		return fmt.Errorf("%s: not a terminal to ask on; pass --yes", strings.TrimSuffix(question, "?"))
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "%s [y/N] ", question)
	answer, _ := bufio.NewReader(in).ReadString('\n')
	switch strings.ToLower(strings.TrimSpace(answer)) {
	case "y", "yes":
		return nil
	}
	return errNotConfirmed
}

func newRuntimesVersions() *cobra.Command {
	var of outputFlags
	cmd := &cobra.Command{
		Use:               "versions RUNTIME",
		ValidArgsFunction: completeRuntimeArg(&of.clientFlags),
		Short:             "List a runtime's versions (ListAgentRuntimeVersions)",
		Args:              cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			vs, err := of.client().AllRuntimeVersions(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if of.structured() {
				return of.print(w, map[string]any{"agentRuntimes": vs})
			}
			tw := table(w, "VERSION", "STATUS", "CREATED")
			for _, v := range vs {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", v.AgentRuntimeVersion, v.Status, when(v.LastUpdatedAt))
			}
			return tw.Flush()
		},
	}
	of.register(cmd)
	return cmd
}

func newEndpoints() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "endpoints",
		Short: "Manage a runtime's endpoints (qualifiers)",
		Long: `Endpoints are the qualifiers a caller names to pick a version: DEFAULT
follows the latest version; the ones you create stay on the version you pin
until you move them.`,
		Args: cobra.NoArgs,
	}
	var (
		listOF, showOF, createOF, updateOF, deleteOF outputFlags
		createVersion, createDesc                    string
		updateVersion, updateDesc                    string
	)
	list := &cobra.Command{
		Use:   "list RUNTIME",
		Short: "List endpoints (ListAgentRuntimeEndpoints)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			eps, err := listOF.client().AllEndpoints(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if listOF.structured() {
				return listOF.print(cmd.OutOrStdout(), map[string]any{"runtimeEndpoints": eps})
			}
			printEndpoints(cmd.OutOrStdout(), eps)
			return nil
		},
	}
	listOF.register(list)
	show := &cobra.Command{
		Use:   "show RUNTIME NAME",
		Short: "Show an endpoint (GetAgentRuntimeEndpoint)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := showOF.client().GetEndpoint(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			return printEndpoint(cmd.OutOrStdout(), e, &showOF)
		},
	}
	showOF.register(show)
	create := &cobra.Command{
		Use:   "create RUNTIME NAME [--version N]",
		Short: "Create an endpoint pinned to a version (CreateAgentRuntimeEndpoint)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := createOF.client().CreateEndpoint(cmd.Context(), args[0],
				client.EndpointInput{Name: args[1], AgentRuntimeVersion: optional(createVersion), Description: optional(createDesc)})
			if err != nil {
				return err
			}
			return printEndpoint(cmd.OutOrStdout(), e, &createOF)
		},
	}
	createOF.register(create)
	create.Flags().StringVar(&createVersion, "version", "", "version to pin (default the latest)")
	create.Flags().StringVar(&createDesc, "description", "", "description")
	update := &cobra.Command{
		Use:   "update RUNTIME NAME --version N",
		Short: "Move an endpoint to another version (UpdateAgentRuntimeEndpoint)",
		Long: `Move an endpoint to another version. Sessions already running on it keep
their version; new sessions get the new one.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("version") && !cmd.Flags().Changed("description") {
				return errors.New("nothing to change: give --version or --description")
			}
			e, err := updateOF.client().UpdateEndpoint(cmd.Context(), args[0], args[1],
				client.EndpointInput{AgentRuntimeVersion: optional(updateVersion), Description: optional(updateDesc)})
			if err != nil {
				return err
			}
			return printEndpoint(cmd.OutOrStdout(), e, &updateOF)
		},
	}
	updateOF.register(update)
	update.Flags().StringVar(&updateVersion, "version", "", "version to move to")
	update.Flags().StringVar(&updateDesc, "description", "", "new description")
	del := &cobra.Command{
		Use:   "delete RUNTIME NAME",
		Short: "Delete an endpoint (DeleteAgentRuntimeEndpoint)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := deleteOF.client().DeleteEndpoint(cmd.Context(), args[0], args[1]); err != nil {
				return err
			}
			if deleteOF.structured() {
				return deleteOF.print(cmd.OutOrStdout(), map[string]string{"status": api.StatusDeleting, "endpointName": args[1]})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleted endpoint %s of %s\n", args[1], args[0])
			return nil
		},
	}
	deleteOF.register(del)
	cmd.AddCommand(list, show, create, update, del)
	return cmd
}

func printEndpoint(w io.Writer, e *client.Endpoint, of *outputFlags) error {
	if of.structured() {
		return of.print(w, e)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, v) }
	row("Name", e.Name)
	row("ARN", e.AgentRuntimeEndpointArn)
	row("Runtime", e.AgentRuntimeArn)
	row("Live version", dash(e.LiveVersion))
	row("Target version", dash(e.TargetVersion))
	row("Status", e.Status)
	row("Description", dash(e.Description))
	row("Created", when(e.CreatedAt))
	row("Updated", when(e.LastUpdatedAt))
	return tw.Flush()
}

// optional is nil for an empty flag value: "left out".
func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
