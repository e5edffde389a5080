// Package greeting stands in for a third-party module: vendored, so the
// build needs no module proxy, and recorded in the binary's build info
// (`go version -m`) as the dependency example.com/greeting v1.2.3.
package greeting

// Hello greets whom.
func Hello(whom string) string { return "hello from " + whom }
