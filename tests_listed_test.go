package khadga_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestListedTestsExist: the tests that docs/cluster.md ("What the tests
// show") and the hub's package doc ("What the tests show") name for each
// point of the issues are real test and fuzz functions of the module, so
// that a renamed or removed test cannot leave its point shown on paper.
func TestListedTestsExist(t *testing.T) {
	defined := map[string]bool{}
	def := regexp.MustCompile(`(?m)^func ((?:Test|Fuzz)[A-Z]\w*)\(`)
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "node_modules" || strings.HasPrefix(d.Name(), ".")) && path != "." {
			return filepath.SkipDir
		}
		if !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range def.FindAllStringSubmatch(string(b), -1) {
			defined[m[1]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	named := regexp.MustCompile(`\b(?:Test|Fuzz)[A-Z]\w*`)
	for _, doc := range []struct{ file, from, to string }{
		{"docs/cluster.md", "\n## What the tests show\n", "\n## "},
		{"signaling/hub/doc.go", "\n// # What the tests show\n", "\npackage hub"},
	} {
		b, err := os.ReadFile(doc.file)
		if err != nil {
			t.Fatal(err)
		}
		text := string(b)
		i := strings.Index(text, doc.from)
		if i < 0 {
			t.Errorf("%s has no section %q", doc.file, strings.TrimSpace(doc.from))
			continue
		}
		section := text[i+len(doc.from):]
		if j := strings.Index(section, doc.to); j >= 0 {
			section = section[:j]
		}
		names := named.FindAllString(section, -1)
		if len(names) < 10 {
			t.Errorf("%s's section names %d tests: the check would prove little", doc.file, len(names))
		}
		for _, name := range names {
			if !defined[name] {
				t.Errorf("%s names %s, which is no test of the module", doc.file, name)
			}
		}
	}
}
