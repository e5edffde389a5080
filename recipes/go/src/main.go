// The Go program of recipes/go.toml: a static binary (CGO_ENABLED=0)
// that prints a greeting from its vendored module and that module's
// version, read back from the build info Go embeds in every binary.
package main

import (
	"fmt"
	"runtime/debug"

	"example.com/greeting"
)

func main() {
	version := "unknown"
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range info.Deps {
			if dep.Path == "example.com/greeting" {
				version = dep.Version
			}
		}
	}
	fmt.Printf("%s (example.com/greeting %s)\n", greeting.Hello("a Go program"), version)
}
