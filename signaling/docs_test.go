package signaling_test

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/khadga/khadga/internal/doccheck"
)

// TestSDKEventsAreDocumented finds every event the JavaScript SDK
// dispatches (emit('peer-joined', ...), new CustomEvent('tokens', ...))
// and checks that docs/sdk.md names it.
func TestSDKEventsAreDocumented(t *testing.T) {
	event := regexp.MustCompile(`(?:emit|new CustomEvent)\('([a-z-]+)'`)
	var names []string
	for _, src := range doccheck.Sources(t, "web/sdk/*.js") {
		for _, m := range event.FindAllStringSubmatch(src, -1) {
			names = append(names, m[1])
		}
	}
	if len(names) < 20 {
		t.Fatalf("found only %d events in the SDK; has it been reorganized?", len(names))
	}
	doccheck.Documented(t, "../docs/sdk.md", "SDK event", names)
}

// TestHTTPErrorCodesAreDocumented finds every error code the HTTP API
// can answer (the code constants and the literals handed to writeError)
// and checks that docs/protocol.md names it.
func TestHTTPErrorCodesAreDocumented(t *testing.T) {
	constant := regexp.MustCompile(`(?m)^\s*code[A-Za-z]+\s*=\s*"([a-z_]+)"`)
	literal := regexp.MustCompile(`writeError\(w, [^,]+, "([a-z_]+)"`)
	var codes []string
	for _, src := range doccheck.Sources(t, "*.go") {
		for _, re := range []*regexp.Regexp{constant, literal} {
			for _, m := range re.FindAllStringSubmatch(src, -1) {
				codes = append(codes, m[1])
			}
		}
	}
	if len(codes) < 15 {
		t.Fatalf("found only %d error codes in the source; has the layout changed?", len(codes))
	}
	doccheck.Documented(t, "../docs/protocol.md", "HTTP error code", codes)
}

// TestEveryRouteIsDocumented finds every method and path the server's
// handler routes (routes.go) and checks that docs/protocol.md names it
// ("POST /api/login"), so that a new endpoint is not left for clients to
// find in the source.
func TestEveryRouteIsDocumented(t *testing.T) {
	route := regexp.MustCompile(`mux\.Handle(?:Func)?\("([A-Z]+ /[^"{]*(?:\{[a-z]+\}[^"]*)?)"`)
	var routes []string
	for _, src := range doccheck.Sources(t, "routes.go") {
		for _, m := range route.FindAllStringSubmatch(src, -1) {
			routes = append(routes, m[1])
		}
	}
	if len(routes) < 20 {
		t.Fatalf("found only %d routes in routes.go; has it been reorganized?", len(routes))
	}
	b, err := os.ReadFile("../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		if !strings.Contains(string(b), r) {
			t.Errorf("route %s is not in docs/protocol.md", r)
		}
	}
}
