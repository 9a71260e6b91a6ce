package main

import (
	"fmt"
	"io"

	"github.com/slipstreamkv/slipstream/internal/conformance"
)

func cmdConformance(args []string, stdout, stderr io.Writer) error {
	fs := flags("conformance", stderr)
	plugin := fs.String("plugin", "", "store plugin binary to prove")
	verbose := fs.Bool("v", false, "also print what each case catches, and the plugin logs of failures")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *plugin == "" {
		return usageErr("--plugin PATH is required")
	}
	_, failed := conformance.RunCLI(stdout, *plugin, *verbose)
	if failed > 0 {
		return fmt.Errorf("%s failed %d conformance cases", *plugin, failed)
	}
	return nil
}
