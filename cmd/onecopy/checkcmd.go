// onecopy check: re-judge a kept run from its history alone.

package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/onecopy/onecopy/report"
)

func checkCommand(code *int) *cobra.Command {
	var out, html string
	var quiet bool
	cmd := &cobra.Command{
		Use:   "check [flags] WORKDIR",
		Short: "re-judge a run kept with --work-dir from its history alone",
		Long: `Re-judges a run kept with --work-dir from its history.jsonl and its recipient list alone,
and prints (and with --report writes) the same report the run produced, byte for byte: the
verdict is a function of the history (docs/history.md, docs/verdicts.md).

` + exitCodes,
		Example: `  onecopy run --recipients 300 --kill in-doubt=2 --work-dir ./work --sender builtin:ledger
  onecopy check ./work
  onecopy check --report again.json --html again.html ./work`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := args[0]
			path := filepath.Join(dir, "history.jsonl")
			if _, err := os.Stat(path); err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return usageErr("%s: no history.jsonl here: give the --work-dir of a run", dir)
				}
				return usageErr("%v", err)
			}
			for flag, p := range map[string]string{"--report": out, "--html": html} {
				if err := checkWritable(flag, p); err != nil {
					return err
				}
			}
			rep, err := report.Load(path)
			if err != nil {
				return usageErr("%s: %v", dir, err)
			}
			stdout := cmd.OutOrStdout()
			if quiet {
				fmt.Fprintf(stdout, "%s (expected %s, seed %d)\n", rep.Verdict, rep.Expect, rep.Seed)
			} else {
				rep.Summary(stdout)
			}
			if out != "" {
				if err := rep.WriteJSON(out); err != nil {
					return err
				}
			}
			if html != "" {
				if err := rep.WriteHTML(html); err != nil {
					return err
				}
			}
			*code = exitFor(rep)
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "report", "", "write the JSON report to `FILE`")
	cmd.Flags().StringVar(&html, "html", "", "write the HTML report to `FILE`")
	cmd.Flags().BoolVar(&quiet, "quiet", false, "print only the verdict line")
	return cmd
}
