// Package policies holds Verdict's shipped policy set: Rego v1 modules, one
// concern per file with its _test.rego beside it, and the thresholds they
// read in data.json (mounted at the root of data, as `opa run` mounts it).
//
// The set is embedded so the binary runs without files; `serve --policies
// DIR` replaces it with a directory on disk.
package policies

import (
	"embed"
	"io/fs"
)

//go:embed *.rego *.json
var files embed.FS

// FS returns the shipped policy set as a read-only file system.
func FS() fs.FS { return files }
