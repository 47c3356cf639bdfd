package hub

import (
	"unicode/utf8"

	"github.com/khadga/khadga/proto"
)

// decode is proto.Decode into m, with a fast path for the plain messages
// clients actually send. proto.Decode runs encoding/json's streaming
// decoder, which costs about two thirds of the hub's CPU per relayed signal
// (see BenchmarkDecodeSignal); the fast path does one scan of the envelope
// and one syntax check of the data (scanComposite), and allocates only the
// short strings. It accepts only input whose meaning is unambiguous: known
// lower-case keys without escapes, each at most once; strings without
// escapes or control characters; v as a small plain integer; data as an
// object or array. Anything else, and every error, is left to
// proto.Decode, so the result is always what proto.Decode returns.
// FuzzDecodeMatchesProto checks that claim.
//
// m.Data may alias b: it is valid only while b is, which for the hub is
// until handle returns (forward copies it into the outgoing frame).
func decode(b []byte, limit int, m *proto.Message) error {
	if fastDecode(b, limit, m) {
		return nil
	}
	pm, err := proto.Decode(b, limit)
	if err != nil {
		return err
	}
	*m = *pm
	return nil
}

// Envelope keys, as bits for spotting duplicates.
const (
	keyType = 1 << iota
	keyV
	keyID
	keyRef
	keyRoom
	keyTo
	keyFrom
	keyData
)

// fastDecode decodes b into m and reports whether it could; m is
// overwritten either way.
func fastDecode(b []byte, limit int, m *proto.Message) bool {
	*m = proto.Message{}
	if limit <= 0 {
		limit = proto.MaxMessageSize
	}
	if len(b) > limit || !utf8.Valid(b) {
		return false
	}
	p := parser{b: b}
	if !p.consume('{') {
		return false
	}
	seen := 0
	for first := true; ; first = false {
		if p.consume('}') {
			if first || !p.atEnd() {
				return false // {} has no type; data after the object
			}
			break
		}
		if !first && !p.consume(',') {
			return false
		}
		key, ok := p.str()
		if !ok || !p.consume(':') {
			return false
		}
		bit, ok := p.field(m, key)
		if !ok || seen&bit != 0 {
			return false
		}
		seen |= bit
	}
	if m.Type == "" || m.V < 0 || m.V > proto.Version {
		return false
	}
	return true
}

// field parses the value of key into m and returns the key's bit.
func (p *parser) field(m *proto.Message, key []byte) (int, bool) {
	switch string(key) {
	case "type":
		s, ok := p.str()
		m.Type = internType(s)
		return keyType, ok
	case "v":
		n, ok := p.smallInt()
		m.V = n
		return keyV, ok
	case "id":
		return keyID, p.strInto(&m.ID)
	case "ref":
		return keyRef, p.strInto(&m.Ref)
	case "room":
		return keyRoom, p.strInto(&m.Room)
	case "to":
		return keyTo, p.strInto(&m.To)
	case "from":
		return keyFrom, p.strInto(&m.From)
	case "data":
		raw, ok := p.composite()
		m.Data = raw // aliases b; see decode
		return keyData, ok
	}
	return 0, false
}

// internType returns the constant for the types clients send, saving an
// allocation per message.
func internType(s []byte) string {
	switch string(s) {
	case proto.TypeSignal:
		return proto.TypeSignal
	case proto.TypeJoin:
		return proto.TypeJoin
	case proto.TypeLeave:
		return proto.TypeLeave
	case proto.TypePing:
		return proto.TypePing
	}
	return string(s)
}

type parser struct {
	b []byte
	i int
}

func (p *parser) skipSpace() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *parser) consume(c byte) bool {
	p.skipSpace()
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

func (p *parser) atEnd() bool {
	p.skipSpace()
	return p.i == len(p.b)
}

// str parses a string without escapes or control characters and returns
// its bytes, which are then exactly the decoded value.
func (p *parser) str() ([]byte, bool) {
	if !p.consume('"') {
		return nil, false
	}
	start := p.i
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			p.i++
			return p.b[start : p.i-1], true
		case c == '\\' || c < 0x20:
			return nil, false
		}
		p.i++
	}
	return nil, false
}

func (p *parser) strInto(dst *string) bool {
	s, ok := p.str()
	if ok {
		*dst = string(s)
	}
	return ok
}

// smallInt parses 0 to 999 written plainly.
func (p *parser) smallInt() (int, bool) {
	p.skipSpace()
	start, n := p.i, 0
	for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' && p.i-start < 3 {
		n = n*10 + int(p.b[p.i]-'0')
		p.i++
	}
	digits := p.i - start
	if digits == 0 || (digits > 1 && p.b[start] == '0') {
		return 0, false
	}
	if p.i < len(p.b) {
		switch p.b[p.i] {
		case ',', '}', ' ', '\t', '\n', '\r':
		default:
			return 0, false // more digits, a fraction or an exponent
		}
	}
	return n, true
}

// composite returns the raw bytes of an object or array, checked by
// scanComposite.
func (p *parser) composite() ([]byte, bool) {
	p.skipSpace()
	end, ok := scanComposite(p.b, p.i)
	if !ok {
		return nil, false
	}
	raw := p.b[p.i:end]
	p.i = end
	return raw, true
}
