// docs/openapi.yaml held to the server: every control route the mux
// serves is described and every described operation is served, with the
// token where the document says, answering only statuses and media types
// it lists; every schema has the fields of its Go type, and every example
// decodes into that type.

package fakesmtp

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/onecopy/onecopy/docs"
)

type oaDoc struct {
	OpenAPI    string                      `yaml:"openapi"`
	Paths      map[string]map[string]*oaOp `yaml:"paths"`
	Components struct {
		Schemas         map[string]*oaSchema  `yaml:"schemas"`
		Responses       map[string]oaResponse `yaml:"responses"`
		SecuritySchemes map[string]any        `yaml:"securitySchemes"`
	} `yaml:"components"`
}

type oaOp struct {
	OperationID string                `yaml:"operationId"`
	Parameters  []oaParam             `yaml:"parameters"`
	RequestBody *oaResponse           `yaml:"requestBody"`
	Responses   map[string]oaResponse `yaml:"responses"`
	Security    []map[string][]string `yaml:"security"`
}

type oaParam struct {
	Name     string    `yaml:"name"`
	In       string    `yaml:"in"`
	Required bool      `yaml:"required"`
	Example  any       `yaml:"example"`
	Schema   *oaSchema `yaml:"schema"`
}

type oaResponse struct {
	Ref     string             `yaml:"$ref"`
	Content map[string]oaMedia `yaml:"content"`
}

type oaMedia struct {
	Schema   *oaSchema `yaml:"schema"`
	Example  any       `yaml:"example"`
	Examples map[string]struct {
		Value any `yaml:"value"`
	} `yaml:"examples"`
}

type oaSchema struct {
	Ref        string               `yaml:"$ref"`
	Type       string               `yaml:"type"`
	Format     string               `yaml:"format"`
	Properties map[string]*oaSchema `yaml:"properties"`
	Required   []string             `yaml:"required"`
	Items      *oaSchema            `yaml:"items"`
	Enum       []string             `yaml:"enum"`
}

func readOpenAPI(t *testing.T) *oaDoc {
	t.Helper()
	var d oaDoc
	if err := yaml.Unmarshal([]byte(docs.OpenAPI()), &d); err != nil {
		t.Fatalf("docs/openapi.yaml: %v", err)
	}
	if !strings.HasPrefix(d.OpenAPI, "3.") {
		t.Fatalf("docs/openapi.yaml: openapi %q, want 3.x", d.OpenAPI)
	}
	return &d
}

// response resolves a $ref to components.responses.
func (d *oaDoc) response(t *testing.T, r oaResponse) oaResponse {
	t.Helper()
	if r.Ref == "" {
		return r
	}
	name, ok := strings.CutPrefix(r.Ref, "#/components/responses/")
	res, found := d.Components.Responses[name]
	if !ok || !found {
		t.Fatalf("unresolved %s", r.Ref)
	}
	return res
}

func schemaName(s *oaSchema) string { return strings.TrimPrefix(s.Ref, "#/components/schemas/") }

// wireTypes maps each JSON schema of the document to the Go type the
// server writes (or reads) for it.
func wireTypes() map[string]reflect.Type {
	return map[string]reflect.Type{
		"Recipient":     reflect.TypeFor[Recipient](),
		"Recipients":    reflect.TypeFor[RecipientPage](),
		"WaitResult":    reflect.TypeFor[waitJSON](),
		"Session":       reflect.TypeFor[SessionInfo](),
		"Faults":        reflect.TypeFor[faultsJSON](),
		"FaultsRequest": reflect.TypeFor[faultsRequest](),
		"Clock":         reflect.TypeFor[clockJSON](),
	}
}

// goType is the Go type of a media type's schema: a named one, or an
// array of one.
func goType(t *testing.T, s *oaSchema) reflect.Type {
	t.Helper()
	if s.Type == "array" && s.Items != nil {
		return reflect.SliceOf(goType(t, s.Items))
	}
	typ, ok := wireTypes()[schemaName(s)]
	if !ok {
		t.Fatalf("schema %+v: no Go type for it (add it to wireTypes)", s)
	}
	return typ
}

// decodeStrict decodes b into a new value of typ, refusing unknown fields.
func decodeStrict(b []byte, typ reflect.Type) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(reflect.New(typ).Interface())
}

// jsonField is one field of a Go type as encoding/json writes it.
type jsonField struct {
	typ       reflect.Type
	omitempty bool
}

// jsonFields lists what encoding/json writes of a struct type, embedded
// structs flattened.
func jsonFields(typ reflect.Type) map[string]jsonField {
	fields := map[string]jsonField{}
	for i := range typ.NumField() {
		f := typ.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" || !f.IsExported() && !f.Anonymous {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			for k, v := range jsonFields(f.Type) {
				if _, shadowed := fields[k]; !shadowed {
					fields[k] = v
				}
			}
			continue
		}
		if name == "" {
			name = f.Name
		}
		fields[name] = jsonField{f.Type, slices.Contains(strings.Split(opts, ","), "omitempty")}
	}
	return fields
}

// kindOf is the JSON Schema type a Go type encodes as.
func kindOf(typ reflect.Type) string {
	if typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	switch {
	case typ == reflect.TypeFor[time.Time]():
		return "string"
	case typ.Kind() == reflect.Bool:
		return "boolean"
	case typ.Kind() == reflect.String:
		return "string"
	case typ.Kind() >= reflect.Int && typ.Kind() <= reflect.Uint64:
		if typ.Kind() == reflect.Int32 && typ.Implements(reflect.TypeFor[interface{ MarshalText() ([]byte, error) }]()) {
			return "string" // Moment
		}
		return "integer"
	case typ.Kind() == reflect.Slice:
		return "array"
	case typ.Kind() == reflect.Struct:
		return "object"
	}
	return typ.Kind().String()
}

func TestOpenAPISchemasMatchTheGoTypes(t *testing.T) {
	d := readOpenAPI(t)
	for name, typ := range wireTypes() {
		s := d.Components.Schemas[name]
		if s == nil {
			t.Errorf("components.schemas.%s: missing", name)
			continue
		}
		fields := jsonFields(typ)
		var required []string
		for k, f := range fields {
			if !f.omitempty {
				required = append(required, k)
			}
			p := s.Properties[k]
			if p == nil {
				t.Errorf("schema %s lacks %q, which %v writes", name, k, typ)
				continue
			}
			want := kindOf(f.typ)
			got := p.Type
			if p.Ref != "" {
				got = d.Components.Schemas[schemaName(p)].Type
			}
			if got != want {
				t.Errorf("schema %s.%s is %q; %v writes %s", name, k, got, typ, want)
			}
			if f.typ == reflect.TypeFor[time.Time]() && p.Format != "date-time" {
				t.Errorf("schema %s.%s: a time, want format date-time", name, k)
			}
		}
		for k := range s.Properties {
			if _, ok := fields[k]; !ok {
				t.Errorf("schema %s has %q, which %v does not write", name, k, typ)
			}
		}
		if !slices.Equal(slices.Sorted(slices.Values(required)), slices.Sorted(slices.Values(s.Required))) {
			t.Errorf("schema %s requires %v; %v always writes %v", name, s.Required, typ, required)
		}
	}
	// Enumerations from the code they describe.
	var moments []string
	for m := MomentConnect; m <= MomentClosed; m++ {
		moments = append(moments, m.String())
	}
	var providers []string
	for _, p := range []apiProvider{sesV2{}, sesV1{}, sendGrid{}, mailgun{}, postmark{}, resend{}} {
		if !slices.Contains(providers, p.name()) {
			providers = append(providers, p.name())
		}
	}
	session := d.Components.Schemas["Session"]
	for _, x := range []struct {
		field string
		want  []string
	}{{"moment", moments}, {"provider", providers}, {"transport", []string{TransportSMTP, TransportHTTP}}} {
		if got := session.Properties[x.field].Enum; !slices.Equal(got, x.want) {
			t.Errorf("Session.%s enum %v, want %v", x.field, got, x.want)
		}
	}
}

func TestOpenAPIExamplesDecodeIntoTheGoTypes(t *testing.T) {
	d := readOpenAPI(t)
	n := 0
	check := func(where string, m oaMedia) {
		examples := map[string]any{}
		if m.Example != nil {
			examples["example"] = m.Example
		}
		for k, e := range m.Examples {
			examples["examples."+k] = e.Value
		}
		if len(examples) == 0 {
			t.Errorf("%s: a JSON body with no example", where)
		}
		typ := goType(t, m.Schema)
		for k, v := range examples {
			b, err := json.Marshal(v)
			if err == nil {
				err = decodeStrict(b, typ)
			}
			if err != nil {
				t.Errorf("%s %s does not decode into %v: %v\n%s", where, k, typ, err, b)
			}
			n++
		}
		// The list without parameters is a Snapshot, with today's fields.
		if typ == reflect.TypeFor[RecipientPage]() {
			if b, _ := json.Marshal(examples["examples.all"]); decodeStrict(b, reflect.TypeFor[Snapshot]()) != nil {
				t.Errorf("%s: the example without parameters is not a Snapshot: %s", where, b)
			}
		}
	}
	for path, ops := range d.Paths {
		for method, op := range ops {
			if op.RequestBody != nil {
				if m, ok := op.RequestBody.Content["application/json"]; ok {
					check(fmt.Sprintf("%s %s request", method, path), m)
				}
			}
			for code, r := range op.Responses {
				if m, ok := d.response(t, r).Content["application/json"]; ok {
					check(fmt.Sprintf("%s %s %s", method, path, code), m)
				}
			}
		}
	}
	if n < 10 {
		t.Errorf("only %d JSON examples checked", n)
	}
}

// controlRoute reports whether a mux pattern is the control API's (the
// rest are the providers' send APIs, each in its provider's format).
func controlRoute(pattern string) (method, path string, ok bool) {
	method, path, _ = strings.Cut(pattern, " ")
	return method, path, strings.HasPrefix(path, "/api/") || path == "/metrics" || path == "/healthz"
}

func TestOpenAPIDescribesEveryRouteAndNoOther(t *testing.T) {
	d := readOpenAPI(t)
	srv, err := Start(context.Background(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	_, patterns := srv.handler()
	served := map[string]bool{}
	for _, p := range patterns {
		method, path, ok := controlRoute(p)
		if !ok {
			continue
		}
		served[method+" "+path] = true
		if d.Paths[path][strings.ToLower(method)] == nil {
			t.Errorf("the mux serves %s; docs/openapi.yaml does not describe it", p)
		}
	}
	for path, ops := range d.Paths {
		for method := range ops {
			if !served[strings.ToUpper(method)+" "+path] {
				t.Errorf("docs/openapi.yaml describes %s %s; the mux does not serve it", strings.ToUpper(method), path)
			}
		}
	}
	if len(served) < 12 {
		t.Errorf("only %d control routes found: %v", len(served), patterns)
	}
}

// exampleRequest builds a request for op from the document's examples.
func exampleRequest(t *testing.T, base, method, path string, op *oaOp) *http.Request {
	t.Helper()
	q := url.Values{}
	for _, p := range op.Parameters {
		v := fmt.Sprint(p.Example)
		switch {
		case p.In == "path":
			path = strings.ReplaceAll(path, "{"+p.Name+"}", url.PathEscape(v))
		case p.In == "query" && (p.Required || p.Example != nil):
			q.Set(p.Name, v)
		}
	}
	var body io.Reader
	if op.RequestBody != nil {
		b, _ := json.Marshal(op.RequestBody.Content["application/json"].Example)
		body = bytes.NewReader(b)
	}
	u := base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequest(strings.ToUpper(method), u, body)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func TestOpenAPIOperationsAnswerAsDocumented(t *testing.T) {
	d := readOpenAPI(t)
	const token = "t0ken"
	srv, err := Start(context.Background(), Options{HTTPAddr: "127.0.0.1:0", APIToken: token, Hooks: []Hook{NewFaultSet(nil, 1)}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	base := "http://" + srv.HTTPAddr()
	hc := &http.Client{Timeout: 10 * time.Second}
	defer hc.CloseIdleConnections()
	do := func(req *http.Request) (int, string, []byte) {
		t.Helper()
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", req.Method, req.URL, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
		return resp.StatusCode, mt, b
	}
	paths := slices.Sorted(func(yield func(string) bool) {
		for p := range d.Paths {
			if !yield(p) {
				return
			}
		}
	})
	for _, path := range paths {
		for method, op := range d.Paths[path] {
			name := strings.ToUpper(method) + " " + path
			// The examples' recipient has a copy (a DELETE may have
			// come before), so the waits on it end.
			srv.oracle.Record(time.Now(), []string{"bob@example.com"}, "<1@x>")
			changes := method != "get"
			if got := len(op.Security) > 0; got != changes {
				t.Errorf("%s: security %v; the server wants the token exactly on the requests that change state", name, op.Security)
			}
			if changes {
				if _, ok := op.Responses["401"]; !ok {
					t.Errorf("%s needs the token but does not document 401", name)
				}
				req := exampleRequest(t, base, method, path, op)
				if code, _, b := do(req); code != http.StatusUnauthorized {
					t.Errorf("%s without the token: %d %s, want 401", name, code, b)
				}
			}
			req := exampleRequest(t, base, method, path, op)
			req.Header.Set("Authorization", "Bearer "+token)
			code, mt, b := do(req)
			r, ok := op.Responses[fmt.Sprint(code)]
			if !ok {
				t.Errorf("%s answered %d %s, which the document does not list", name, code, b)
				continue
			}
			r = d.response(t, r)
			if len(r.Content) == 0 {
				if len(b) > 0 {
					t.Errorf("%s answered %d with a body %q; the document says none", name, code, b)
				}
				continue
			}
			m, ok := r.Content[mt]
			if !ok {
				t.Errorf("%s answered %d as %q; the document says %v", name, code, mt, slices.Collect(func(yield func(string) bool) {
					for k := range r.Content {
						yield(k)
					}
				}))
				continue
			}
			if mt == "application/json" {
				if err := decodeStrict(b, goType(t, m.Schema)); err != nil {
					t.Errorf("%s answered %d with %s, which is not its schema's %v: %v", name, code, b, goType(t, m.Schema), err)
				}
			}
		}
	}
}

func TestOpenAPIServed(t *testing.T) {
	srv, err := Start(context.Background(), Options{HTTPAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	resp, err := http.Get("http://" + srv.HTTPAddr() + "/api/v1/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/yaml" || string(b) != docs.OpenAPI() {
		t.Errorf("GET /api/v1/openapi.yaml: %d %s, %d bytes; want 200 application/yaml, docs/openapi.yaml", resp.StatusCode, resp.Header.Get("Content-Type"), len(b))
	}
	file, err := os.ReadFile(filepath.Join("..", "docs", "openapi.yaml"))
	if err != nil || string(file) != docs.OpenAPI() {
		t.Errorf("the embedded document differs from docs/openapi.yaml (%v)", err)
	}
}

// TestOpenAPIValidates runs openapi-spec-validator (Python) where it is
// installed: the checks above cover what the server does, it covers the
// OpenAPI rules.
func TestOpenAPIValidates(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err == nil {
		err = exec.Command(python, "-c", "import openapi_spec_validator").Run()
	}
	if err != nil {
		t.Skip("openapi-spec-validator (pip) not installed: skipping the OpenAPI rules check (the tests above ran)")
	}
	out, err := exec.Command(python, "-m", "openapi_spec_validator", filepath.Join("..", "docs", "openapi.yaml")).CombinedOutput()
	if err != nil {
		t.Errorf("openapi-spec-validator: %v\n%s", err, out)
	}
}
