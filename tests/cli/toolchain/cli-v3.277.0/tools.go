//go:build tools

// Package tools pins the main package that scripts/pulumi-toolchain.sh builds,
// so that `go mod tidy` keeps every module it needs in go.mod and go.sum.
package tools

import _ "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi"
