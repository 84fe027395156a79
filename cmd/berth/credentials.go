package main

import (
	"fmt"
	"io"
	"net"
	"path/filepath"
	"slices"

	"github.com/berth-dev/berth/internal/auth"
	"github.com/berth-dev/berth/internal/config"
	"github.com/spf13/cobra"
)

func newCredentials() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "credentials",
		Short: "Manage the keys berth accepts (its credentials file)",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newCredentialsCreate())
	return cmd
}

func newCredentialsCreate() *cobra.Command {
	var cfgPath, file, endpoint string
	cmd := &cobra.Command{
		Use:   "create NAME",
		Short: "Add a principal with a fresh key pair and print the variables to export",
		Long: `Add a principal NAME with a fresh access key pair to berth's credentials file
(AWS shared-credentials format; created, mode 0600, if missing) and print the
environment variables that point an AWS SDK or the berth CLI at berth with
that key. A running berth picks the new key up within seconds.

The file is --file, else --config's auth.credentials_file, else
` + config.DefaultCredentialsFile + `. The exports go to standard output,
so eval "$(berth credentials create alice)" sets them.`,
		Example: `  berth credentials create alice --config berth.yaml
  eval "$(berth credentials create ops --file ./berth-credentials)"`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg := config.Default()
			if cfgPath != "" {
				var err error
				if cfg, err = config.Load(cfgPath); err != nil {
					return err
				}
			}
			if file == "" {
				file = config.DefaultCredentialsFile
				if cfg.Auth != nil && cfg.Auth.CredentialsFile != "" {
					file = cfg.Auth.CredentialsFile
				}
			}
			key, err := auth.CreateProfile(file, args[0])
			if err != nil {
				return err
			}
			if endpoint == "" {
				endpoint = endpointFor(cfg)
			}
			abs, _ := filepath.Abs(file)
			fmt.Fprintf(cmd.ErrOrStderr(), "principal %s added to %s\n", key.Name, abs)
			if cfg.Auth != nil && !slices.Contains(cfg.Auth.Admins, key.Name) {
				fmt.Fprintf(cmd.ErrOrStderr(), "%s is not an admin: list it under auth.admins for the control plane and berth's session API\n", key.Name)
			}
			printExports(cmd.OutOrStdout(), key, cfg.Region, endpoint)
			return nil
		},
	}
	cmd.Flags().StringVarP(&cfgPath, "config", "c", "", "berth's config file (for auth.credentials_file, region and listen)")
	cmd.Flags().StringVar(&file, "file", "", "credentials file (default: the config's auth.credentials_file, else "+config.DefaultCredentialsFile+")")
	cmd.Flags().StringVar(&endpoint, "endpoint", "", "berth's URL for the printed AWS_ENDPOINT_URL_* lines (default: from the config's listen)")
	return cmd
}

// printExports prints what a user coming from AWS changes: environment
// variables only.
func printExports(w io.Writer, key auth.Key, region, endpoint string) {
	fmt.Fprintf(w, "export AWS_ACCESS_KEY_ID=%s\n", key.AccessKeyID)
	fmt.Fprintf(w, "export AWS_SECRET_ACCESS_KEY=%s\n", key.SecretAccessKey)
	fmt.Fprintf(w, "export AWS_REGION=%s\n", region)
	fmt.Fprintf(w, "export AWS_ENDPOINT_URL_BEDROCK_AGENTCORE=%s\n", endpoint)
	fmt.Fprintf(w, "export AWS_ENDPOINT_URL_BEDROCK_AGENTCORE_CONTROL=%s\n", endpoint)
	fmt.Fprintf(w, "export BERTH_ENDPOINT=%s\n", endpoint)
}

// endpointFor is the URL clients reach a berth with this config at.
func endpointFor(cfg config.Config) string {
	scheme := "http"
	if cfg.TLS.Enabled() {
		scheme = "https"
	}
	return reachable(scheme, cfg.Listen)
}

// reachable is scheme://addr with a listen-on-everything host replaced by
// loopback, which at least works from the berth host.
func reachable(scheme, addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return scheme + "://" + addr
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}
