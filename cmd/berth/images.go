package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/image"
	"github.com/spf13/cobra"
)

func newImages() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "images",
		Short: "Pull, list and remove the container images image runtimes run",
		Long: `berth pulls container images itself (no Docker needed) and keeps each one
unpacked once under its data dir. Runtimes pull their image when they are
created or updated; these commands manage the store (docs/images.md).`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newImagesPull(), newImagesList(), newImagesRemove(), newImagesPrune())
	return cmd
}

func newImagesPull() *cobra.Command {
	var of outputFlags
	cmd := &cobra.Command{
		Use:     "pull REF",
		Short:   "Pull an image into berth's store, with a progress bar",
		Example: `  berth images pull registry.example:5000/team/agent:v3`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			bar := progressBar{w: cmd.ErrOrStderr()}
			img, err := of.client().PullImage(cmd.Context(), args[0], bar.show)
			bar.end()
			if err != nil {
				return err
			}
			if of.json {
				return printJSON(cmd.OutOrStdout(), img)
			}
			emu := ""
			if img.Emulated {
				emu = " (emulated: this host runs it under qemu-user)"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s\n%s, %s, %s unpacked%s\n", img.Digest, img.Platform, image.HumanBytes(img.Size), image.HumanBytes(img.Unpacked), emu)
			return nil
		},
	}
	of.register(cmd)
	return cmd
}

// progressBar draws a pull's progress on one line of a terminal.
type progressBar struct {
	w     io.Writer
	drawn bool
}

func (b *progressBar) show(e api.ImagePullEvent) {
	const width = 30
	line := fmt.Sprintf("%-11s", e.Phase)
	if e.Phase == "downloading" && e.Total > 0 {
		n := int(int64(width) * e.Done / e.Total)
		line += fmt.Sprintf(" [%s%s] %s / %s", strings.Repeat("=", n), strings.Repeat(" ", width-n), image.HumanBytes(e.Done), image.HumanBytes(e.Total))
	}
	fmt.Fprintf(b.w, "\r%-72s", line)
	b.drawn = true
}

func (b *progressBar) end() {
	if b.drawn {
		fmt.Fprintln(b.w)
	}
}

func newImagesList() *cobra.Command {
	var of outputFlags
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List pulled images: digest, size and the runtimes using each",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			list, err := of.client().ListImages(cmd.Context())
			if err != nil {
				return err
			}
			if of.json {
				return printJSON(cmd.OutOrStdout(), list)
			}
			tw := table(cmd.OutOrStdout(), "DIGEST", "REF", "PLATFORM", "SIZE", "UNPACKED", "RUNTIMES", "PULLED")
			for _, img := range list.Images {
				ref, platform := "-", img.Platform
				if len(img.Refs) > 0 {
					ref = img.Refs[0]
				}
				if img.Emulated {
					platform += " (emulated)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", strings.TrimPrefix(img.Digest, "sha256:")[:12], ref, platform,
					image.HumanBytes(img.Size), image.HumanBytes(img.Unpacked), dash(strings.Join(img.Runtimes, ",")), when(img.PulledAt))
			}
			return tw.Flush()
		},
	}
	of.register(cmd)
	return cmd
}

func newImagesRemove() *cobra.Command {
	var of outputFlags
	cmd := &cobra.Command{
		Use:     "rm DIGEST|REF",
		Aliases: []string{"remove"},
		Short:   "Remove an image no runtime version pins",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out, err := of.client().RemoveImage(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return printPrune(cmd.OutOrStdout(), of.json, out)
		},
	}
	of.register(cmd)
	return cmd
}

func newImagesPrune() *cobra.Command {
	var of outputFlags
	cmd := &cobra.Command{
		Use:   "prune",
		Short: "Remove every image no runtime version pins (berth also does this hourly)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out, err := of.client().PruneImages(cmd.Context())
			if err != nil {
				return err
			}
			return printPrune(cmd.OutOrStdout(), of.json, out)
		},
	}
	of.register(cmd)
	return cmd
}

func printPrune(w io.Writer, asJSON bool, p *api.ImagePrune) error {
	if asJSON {
		return printJSON(w, p)
	}
	for _, d := range p.Removed {
		fmt.Fprintln(w, "removed", d)
	}
	fmt.Fprintf(w, "%d images, %d blobs, %s freed\n", len(p.Removed), p.Blobs, image.HumanBytes(p.Bytes))
	return nil
}
