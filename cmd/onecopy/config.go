// The versioned config file of gate and soak (onecopy.yaml, --config): the
// sender, the scenarios in or out, per-scenario levels and overrides, the
// seed and the scale. Flags given on the command line win over the file.

package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/onecopy/onecopy/scenarios"
	"github.com/onecopy/onecopy/verdict"
)

// fileConfig is onecopy.yaml, version 1 (docs/config.md).
type fileConfig struct {
	Version   int                         `yaml:"version"`
	Sender    []string                    `yaml:"sender"` // a command, or ["builtin:NAME"]
	Seed      *uint64                     `yaml:"seed"`
	Scale     float64                     `yaml:"scale"`
	Timeout   time.Duration               `yaml:"timeout"`
	Parallel  int                         `yaml:"parallel"`
	Only      []string                    `yaml:"only"`
	Skip      []string                    `yaml:"skip"`
	Scenarios map[string]scenarioOverride `yaml:"scenarios"`
	Soak      struct {
		Duration time.Duration `yaml:"duration"`
		Chaos    string        `yaml:"chaos"`
	} `yaml:"soak"`
}

// scenarioOverride changes one scenario of the catalog.
type scenarioOverride struct {
	Expect     string   `yaml:"expect"`
	Recipients int      `yaml:"recipients"`
	Kills      []string `yaml:"kills"`
	Faults     []string `yaml:"faults"`
}

// loadConfig reads path; every problem names path:line.
func loadConfig(path string) (*fileConfig, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, usageErr("--config: %v", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var c fileConfig
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		msg = strings.TrimPrefix(msg, "unmarshal errors:\n  ")
		msg = strings.ReplaceAll(msg, "line ", path+":")
		msg = strings.ReplaceAll(msg, " in type main.fileConfig", "")
		msg = strings.ReplaceAll(msg, " in type main.scenarioOverride", "")
		return nil, usageErr("%s (want a onecopy.yaml of version 1: docs/config.md)", msg)
	}
	if c.Version != 1 {
		return nil, usageErr("%s: version %d: this onecopy reads version 1 (write \"version: 1\" first)", path, c.Version)
	}
	for name, o := range c.Scenarios {
		if _, err := scenarios.Select(scenarios.Catalog(), []string{name}, nil); err != nil {
			return nil, usageErr("%s: scenarios.%s: %v", path, name, err)
		}
		if o.Expect != "" {
			if _, err := verdict.ParseLevel(o.Expect); err != nil {
				return nil, usageErr("%s: scenarios.%s.expect: %v", path, name, err)
			}
		}
	}
	return &c, nil
}

// senderArgs splits the file's sender into --sender and a command.
func (c *fileConfig) senderArgs() (builtin string, command []string) {
	if len(c.Sender) == 1 && strings.HasPrefix(c.Sender[0], "builtin:") {
		return c.Sender[0], nil
	}
	return "", c.Sender
}

// apply overrides the selected scenarios as the file says.
func (c *fileConfig) apply(selected []scenarios.Scenario) []scenarios.Scenario {
	if c == nil {
		return selected
	}
	for i := range selected {
		o, ok := c.Scenarios[selected[i].Name]
		if !ok {
			continue
		}
		if o.Expect != "" {
			selected[i].Expect, _ = verdict.ParseLevel(o.Expect)
		}
		if o.Recipients > 0 {
			selected[i].Recipients = o.Recipients
		}
		if o.Kills != nil {
			selected[i].Kills = o.Kills
		}
		if o.Faults != nil {
			selected[i].Faults = o.Faults
		}
	}
	return selected
}

// fill sets the gate's flags the command line left alone from the file.
func (c *fileConfig) fill(cmd *cobra.Command, f *gateFlags, args *[]string) {
	set := func(name string) bool { return cmd.Flags().Changed(name) }
	if b, command := c.senderArgs(); len(*args) == 0 && !set("sender") {
		f.sender, *args = b, command
	}
	if c.Seed != nil && !set("seed") {
		f.seed = *c.Seed
		cmd.Flags().Lookup("seed").Changed = true
	}
	if c.Scale > 0 && !set("scale") {
		f.scale = c.Scale
	}
	if c.Timeout > 0 && !set("timeout") {
		f.timeout = c.Timeout
	}
	if c.Parallel > 0 && !set("parallel") {
		f.parallel = c.Parallel
	}
	if !set("only") {
		f.only = c.Only
	}
	if !set("skip") {
		f.skip = c.Skip
	}
}

// fillSoak sets the soak's flags the command line left alone from the file.
func (c *fileConfig) fillSoak(cmd *cobra.Command, f *soakFlags, args *[]string) {
	set := func(name string) bool { return cmd.Flags().Changed(name) }
	if b, command := c.senderArgs(); len(*args) == 0 && !set("sender") {
		f.sender, *args = b, command
	}
	if c.Seed != nil && !set("seed") {
		f.seed = *c.Seed
		cmd.Flags().Lookup("seed").Changed = true
	}
	if c.Scale > 0 && !set("scale") {
		f.scale = c.Scale
	}
	if c.Timeout > 0 && !set("timeout") {
		f.timeout = c.Timeout
	}
	if c.Soak.Duration > 0 && !set("duration") {
		f.duration = c.Soak.Duration
	}
	if c.Soak.Chaos != "" && !set("chaos") {
		f.chaos = c.Soak.Chaos
	}
}
