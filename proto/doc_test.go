package proto

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"
)

// TestDocExamples decodes every JSON example in the package doc
// (doc.go) strictly, its data into the type's struct with no unknown
// field, and validates the ones clients send, so that an example cannot
// drift from the messages.
func TestDocExamples(t *testing.T) {
	b, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	var examples []string
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(line, "//\t{"):
			examples = append(examples, strings.TrimPrefix(line, "//\t"))
		case strings.HasPrefix(line, "//\t ") && len(examples) > 0: // a continued example
			examples[len(examples)-1] += strings.TrimPrefix(line, "//\t")
		}
	}
	data := map[string]func() any{
		TypeWelcome: func() any { return new(Welcome) }, TypeJoined: func() any { return new(Joined) },
		TypePeerJoined: func() any { return new(Member) }, TypePeerLeft: func() any { return new(PeerLeft) },
		TypePresence: func() any { return new(Presence) }, TypeError: func() any { return new(Error) },
		TypeReconnect: func() any { return new(Reconnect) }, TypeSignal: func() any { return new(Signal) },
		TypeJoin: func() any { return new(Join) },
		TypeAck:  nil, TypePong: nil, TypeLeave: nil, TypePing: nil,
	}
	checked := 0
	for _, ex := range examples {
		if strings.Contains(ex, "{...}") {
			continue // the envelope, with its data left out
		}
		var m Message
		if err := strict([]byte(ex), &m); err != nil {
			t.Errorf("%s: %v", ex, err)
			continue
		}
		newData, known := data[m.Type]
		switch {
		case !known:
			t.Errorf("%s: unknown type %q", ex, m.Type)
		case newData == nil && len(m.Data) != 0:
			t.Errorf("%s: %s carries no data", ex, m.Type)
		case newData != nil && len(m.Data) != 0: // join's data is optional
			if err := strict(m.Data, newData()); err != nil {
				t.Errorf("%s: data: %v", ex, err)
			}
		}
		if m.From == "" && m.Ref == "" && (m.Type == TypeJoin || m.Type == TypeLeave || m.Type == TypeSignal || m.Type == TypePing) {
			if err := m.Validate(); err != nil {
				t.Errorf("%s: a client's message that the server refuses: %v", ex, err)
			}
		}
		checked++
	}
	if checked < 20 {
		t.Fatalf("checked only %d examples in doc.go; has its layout changed?", checked)
	}
}

func strict(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	return d.Decode(v)
}
