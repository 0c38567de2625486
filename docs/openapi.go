// Package docs carries the one document onecopy serves as well as
// publishes: the OpenAPI description of the fake SMTP server's control
// API, embedded so docs/openapi.yaml is its only copy.
package docs

import _ "embed"

//go:embed openapi.yaml
var openAPI string

// OpenAPI is docs/openapi.yaml: the OpenAPI 3 description of the fake SMTP
// server's HTTP control API, as GET /api/v1/openapi.yaml serves it.
func OpenAPI() string { return openAPI }
