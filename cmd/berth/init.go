package main

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"text/template"

	"github.com/spf13/cobra"
)

//go:embed scaffold
var scaffold embed.FS

// A language's scaffold: its files (scaffold/LANG/*.tmpl, written without
// .tmpl), the command berth runs, and what to do before berth serve.
type language struct {
	command []string
	build   string // a step before serving, if any
}

var languages = map[string]language{
	"python": {command: []string{"python3", "agent.py"}},
	"node":   {command: []string{"node", "agent.js"}},
	"go":     {command: []string{"./{{.Name}}"}, build: "go build -o {{.Name}} ."},
}

// runtimeNameRE is AgentCore's runtime name pattern.
var runtimeNameRE = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9_]{0,47}$`)

func newInit() *cobra.Command {
	var lang, name string
	cmd := &cobra.Command{
		Use:   "init [DIR]",
		Short: "Scaffold an agent and a berth.yaml that runs it",
		Long: `Write a minimal agent in DIR (default: the current directory) and a
berth.yaml declaring it as a runtime, so that berth serve -c berth.yaml runs
it. The agent speaks AgentCore's HTTP contract (/ping, /invocations) with
its language's standard library only. Existing files are never overwritten.`,
		Example: `  berth init --lang python myagent && cd myagent
  berth serve -c berth.yaml
  berth invoke -r myagent '{"prompt": "hello"}'`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, ok := languages[lang]
			if !ok {
				return fmt.Errorf("--lang %q: want go, python or node", lang)
			}
			dir := "."
			if len(args) == 1 {
				dir = args[0]
			}
			abs, err := filepath.Abs(dir)
			if err != nil {
				return err
			}
			if name == "" {
				name = strings.NewReplacer("-", "_", ".", "_", " ", "_").Replace(filepath.Base(abs))
			}
			if !runtimeNameRE.MatchString(name) {
				return fmt.Errorf("runtime name %q must match [a-zA-Z][a-zA-Z0-9_]{0,47}; choose one with --name", name)
			}
			files, err := scaffoldFiles(lang, l, name)
			if err != nil {
				return err
			}
			for f := range files {
				if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
					return fmt.Errorf("%s exists: berth init never overwrites a file", filepath.Join(dir, f))
				} else if !errors.Is(err, fs.ErrNotExist) {
					return err
				}
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			for f, data := range files {
				if err := os.WriteFile(filepath.Join(dir, f), data, 0o644); err != nil {
					return err
				}
			}
			fmt.Fprintf(out, "wrote a %s agent %s and its berth.yaml in %s; next:\n", lang, name, dir)
			if dir != "." {
				fmt.Fprintf(out, "  cd %s\n", dir)
			}
			if l.build != "" {
				fmt.Fprintf(out, "  %s\n", expand(l.build, name))
			}
			fmt.Fprintf(out, "  berth serve -c berth.yaml\n  berth invoke -r %s '{\"prompt\": \"hello\"}'    # in another terminal\n", name)
			return nil
		},
	}
	cmd.Flags().StringVar(&lang, "lang", "python", "the agent's language: go, python or node")
	cmd.Flags().StringVar(&name, "name", "", "the runtime's name (default: the directory's)")
	cmd.RegisterFlagCompletionFunc("lang", cobra.FixedCompletions([]cobra.Completion{"go", "python", "node"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// scaffoldFiles renders a language's files and the berth.yaml, by name.
func scaffoldFiles(lang string, l language, name string) (map[string][]byte, error) {
	files := map[string][]byte{}
	root := path.Join("scaffold", lang)
	entries, err := scaffold.ReadDir(root)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		data, err := scaffold.ReadFile(path.Join(root, e.Name()))
		if err != nil {
			return nil, err
		}
		files[strings.TrimSuffix(e.Name(), ".tmpl")] = []byte(expand(string(data), name))
	}
	var y strings.Builder
	fmt.Fprintf(&y, "# berth serve -c berth.yaml runs this agent; the reference of every key is\n")
	fmt.Fprintf(&y, "# in berth's README (Configuration and limits).\n")
	fmt.Fprintf(&y, "runtimes:\n  - name: %s\n    command: [", name)
	for i, c := range l.command {
		if i > 0 {
			y.WriteString(", ")
		}
		fmt.Fprintf(&y, "%q", expand(c, name))
	}
	y.WriteString("]\n    workdir: .\n    idle_timeout: 15m\n")
	files["berth.yaml"] = []byte(y.String())
	return files, nil
}

// expand fills {{.Name}} in a scaffold text.
func expand(text, name string) string {
	var b bytes.Buffer
	template.Must(template.New("").Parse(text)).Execute(&b, struct{ Name string }{name})
	return b.String()
}
