// Package stacks summarises every goroutine's stack for a test that timed
// out waiting: which of the project's goroutines are blocked, and where.
// A full dump of a cluster test runs to thousands of lines (pion, NATS,
// the test's own clients) and buries the one that matters; a summary
// groups identical stacks and keeps those that pass through this module.
package stacks

import (
	"fmt"
	"regexp"
	"runtime"
	"slices"
	"strings"
)

// module marks the frames that are ours.
const module = "github.com/khadga/khadga/"

// Summary returns the goroutines whose stacks pass through this module,
// identical stacks (ignoring arguments, offsets and how long they waited)
// grouped with their count, most numerous first.
func Summary() string { return summarise(all()) }

func all() string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) || len(buf) >= 64<<20 {
			return string(buf[:n])
		}
		buf = make([]byte, 2*len(buf))
	}
}

var (
	header = regexp.MustCompile(`^goroutine \d+ \[([^,\]]+)`)
	args   = regexp.MustCompile(`\([^()]*\)$`)
	offset = regexp.MustCompile(` \+0x[0-9a-f]+$`)
)

type group struct {
	key   string
	count int
}

func summarise(dump string) string {
	counts := map[string]int{}
	for _, g := range strings.Split(strings.TrimSpace(dump), "\n\n") {
		if key, ok := normalise(g); ok {
			counts[key]++
		}
	}
	groups := make([]group, 0, len(counts))
	for k, n := range counts {
		groups = append(groups, group{k, n})
	}
	slices.SortFunc(groups, func(a, b group) int {
		if a.count != b.count {
			return b.count - a.count
		}
		return strings.Compare(a.key, b.key)
	})
	var b strings.Builder
	fmt.Fprintf(&b, "goroutines through %s: %d distinct stacks\n", strings.TrimSuffix(module, "/"), len(groups))
	for _, g := range groups {
		fmt.Fprintf(&b, "\n%d x %s\n", g.count, g.key)
	}
	return b.String()
}

// normalise turns one goroutine's stack into its group key: its state,
// its frames' functions, and the lines of this module's frames (a frame
// is a function line and a file line). It reports false for a stack that
// has none of this module's frames.
func normalise(g string) (string, bool) {
	lines := strings.Split(g, "\n")
	m := header.FindStringSubmatch(lines[0])
	if m == nil {
		return "", false
	}
	var b strings.Builder
	b.WriteString("[" + m[1] + "]")
	ours, frameOurs := false, false
	for i, l := range lines[1:] {
		l = strings.TrimSpace(l)
		if i%2 == 1 { // the file line of the frame above
			if frameOurs {
				b.WriteString(" at " + offset.ReplaceAllString(l[strings.LastIndex(l, "/")+1:], ""))
			}
			continue
		}
		if strings.HasPrefix(l, "created by ") {
			l = "created by " + strings.Fields(l)[2]
		}
		l = args.ReplaceAllString(l, "()")
		frameOurs = strings.Contains(l, module)
		ours = ours || frameOurs
		b.WriteString("\n  " + strings.Replace(l, module, "", 1))
	}
	return b.String(), ours
}
