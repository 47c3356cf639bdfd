package storetest

import (
	"flag"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
)

var updateFields = flag.Bool("update-record-fields", false, "rewrite the record-fields golden files with the fields the records have now")

// RecordFields lists every JSON field a record of v's type can hold, one
// "path kind" line each (nested structs, slices and maps followed), sorted.
// A field added, removed, renamed or retyped changes the list. A field
// tagged khadga:"droppable" is left out: one whose loss, when an older
// binary rewrites the record without it, costs nothing but what the older
// binary did anyway (its comment must say why).
func RecordFields(v any) []string {
	var out []string
	walkFields(reflect.TypeOf(v), reflect.TypeOf(v).Name(), map[reflect.Type]bool{}, &out)
	slices.Sort(out)
	return out
}

func walkFields(t reflect.Type, path string, seen map[reflect.Type]bool, out *[]string) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t.Kind() == reflect.Struct && t.PkgPath() != "time" && !seen[t]:
		seen[t] = true
		defer delete(seen, t)
		for f := range t.Fields() {
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if !f.IsExported() || name == "-" || f.Tag.Get("khadga") == "droppable" {
				continue
			}
			if name == "" {
				name = f.Name
			}
			*out = append(*out, fmt.Sprintf("%s.%s %s", path, name, f.Type))
			walkFields(f.Type, path+"."+name, seen, out)
		}
	case t.Kind() == reflect.Slice && t.Elem().Kind() != reflect.Uint8, t.Kind() == reflect.Map:
		walkFields(t.Elem(), path+"[]", seen, out)
	}
}

// CheckRecordFields compares the fields of records (RecordFields of each)
// with the golden file at path, written for schema version schema. Older
// binaries rewrite records without the fields they do not know (a
// downgrade would silently drop, say, a second factor), so a record that
// gains or changes a field needs a new schema version, which older binaries
// refuse: the test fails when the fields change and the version does not.
// -update-record-fields rewrites the file once the version is bumped.
func CheckRecordFields(t *testing.T, path string, schema uint64, records ...any) {
	t.Helper()
	var lines []string
	for _, r := range records {
		lines = append(lines, RecordFields(r)...)
	}
	want := fmt.Sprintf("schema %d\n%s\n", schema, strings.Join(lines, "\n"))
	got, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	if os.IsNotExist(err) && !*updateFields {
		t.Fatalf("%s is missing: run the test with -update-record-fields to write it", path)
	}
	if string(got) == want {
		return
	}
	var golden uint64
	fmt.Sscanf(string(got), "schema %d", &golden)
	if *updateFields && (schema > golden || got == nil) {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if schema == golden {
		t.Fatalf("the stored records' fields changed, and the schema version is still %d: an older khadga would "+
			"rewrite these records without the new fields. Add a migration step (one that changes nothing will do) "+
			"so that the version goes up and older binaries refuse the data, then run the test with "+
			"-update-record-fields.\n%s", schema, lineDiff(string(got), want))
	}
	t.Fatalf("%s is for schema %d, the code writes %d: run the test with -update-record-fields\n%s",
		path, golden, schema, lineDiff(string(got), want))
}

// lineDiff lists the lines only in a (-) and only in b (+).
func lineDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	var d []string
	for _, l := range al {
		if !slices.Contains(bl, l) {
			d = append(d, "- "+l)
		}
	}
	for _, l := range bl {
		if !slices.Contains(al, l) {
			d = append(d, "+ "+l)
		}
	}
	return strings.Join(d, "\n")
}
