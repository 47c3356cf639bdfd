package hub

import "encoding/binary"

// maxScanDepth bounds the nesting scanComposite follows. Deeper data is not
// an error: the caller falls back to proto.Decode, which decides.
const maxScanDepth = 64

// scanComposite checks the JSON object or array that starts at b[i] and
// returns the index just past it. It is the syntax check of json.Valid in
// one pass without a state function per byte: a signal's data is mostly
// long strings (SDP, padding), which it skips eight bytes at a time. It does
// not check UTF-8; fastDecode has done that for the whole message.
// FuzzScanComposite checks that it agrees with json.Valid.
func scanComposite(b []byte, i int) (int, bool) {
	if i >= len(b) || (b[i] != '{' && b[i] != '[') {
		return 0, false
	}
	var stack [maxScanDepth]byte
	depth := 0
	ok := true
	for {
		// A value starts at i.
		i = skipSpace(b, i)
		if i >= len(b) {
			return 0, false
		}
		switch c := b[i]; c {
		case '{', '[':
			if depth == len(stack) {
				return 0, false
			}
			stack[depth] = c + 2 // '{'+2 is '}', '['+2 is ']'
			depth++
			i = skipSpace(b, i+1)
			if i < len(b) && b[i] == c+2 {
				i++
				depth--
				break // an empty container is a complete value
			}
			if c == '{' {
				if i, ok = scanKey(b, i); !ok {
					return 0, false
				}
			}
			continue // its first member's value
		case '"':
			i, ok = scanString(b, i)
		case 't':
			i, ok = scanLiteral(b, i, "true")
		case 'f':
			i, ok = scanLiteral(b, i, "false")
		case 'n':
			i, ok = scanLiteral(b, i, "null")
		default:
			i, ok = scanNumber(b, i)
		}
		if !ok {
			return 0, false
		}
		// After a value: close containers until a comma or the end.
		for {
			if depth == 0 {
				return i, true
			}
			i = skipSpace(b, i)
			if i >= len(b) {
				return 0, false
			}
			if b[i] == ',' {
				i++
				if stack[depth-1] == '}' {
					if i, ok = scanKey(b, i); !ok {
						return 0, false
					}
				}
				break
			}
			if b[i] != stack[depth-1] {
				return 0, false
			}
			i++
			depth--
		}
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// scanKey checks `"key" :` at b[i:] (after optional space) and returns the
// index after the colon.
func scanKey(b []byte, i int) (int, bool) {
	i = skipSpace(b, i)
	if i >= len(b) || b[i] != '"' {
		return 0, false
	}
	i, ok := scanString(b, i)
	if !ok {
		return 0, false
	}
	i = skipSpace(b, i)
	if i >= len(b) || b[i] != ':' {
		return 0, false
	}
	return i + 1, true
}

// Byte masks for scanString's eight-bytes-at-a-time test.
const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// scanString checks the string whose quote is b[i] and returns the index
// after its closing quote.
func scanString(b []byte, i int) (int, bool) {
	i++
	for {
		// Skip eight bytes at a time while none is a quote, a backslash or
		// a control character. hasZero(v) is non-zero iff a byte of v is 0;
		// the first term is the same test for bytes below 0x20.
		for i+8 <= len(b) {
			x := binary.LittleEndian.Uint64(b[i:])
			q, bs := x^(ones*'"'), x^(ones*'\\')
			if ((x-ones*0x20)&^x|(q-ones)&^q|(bs-ones)&^bs)&highs != 0 {
				break
			}
			i += 8
		}
		if i >= len(b) {
			return 0, false
		}
		switch c := b[i]; {
		case c == '"':
			return i + 1, true
		case c < 0x20:
			return 0, false
		case c == '\\':
			if i+1 >= len(b) {
				return 0, false
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) || !isHex(b[i+5]) {
					return 0, false
				}
				i += 6
			default:
				return 0, false
			}
		default:
			i++
		}
	}
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func scanLiteral(b []byte, i int, lit string) (int, bool) {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return 0, false
	}
	return i + len(lit), true
}

// scanNumber checks -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? at b[i:].
func scanNumber(b []byte, i int) (int, bool) {
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && isDigit(b[i]):
		i = skipDigits(b, i)
	default:
		return 0, false
	}
	if i < len(b) && b[i] == '.' {
		if i++; i >= len(b) || !isDigit(b[i]) {
			return 0, false
		}
		i = skipDigits(b, i)
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || !isDigit(b[i]) {
			return 0, false
		}
		i = skipDigits(b, i)
	}
	return i, true
}

func skipDigits(b []byte, i int) int {
	for i < len(b) && isDigit(b[i]) {
		i++
	}
	return i
}
