package kvstore

import (
	"encoding/hex"
	"strings"
)

// key turns a store name into a KV key: ASCII letters, digits, '-' and '_'
// stay, every other byte becomes '=' and two upper-case hex digits. The
// result uses only characters KV keys allow, never starts or ends with
// '.', and two names never map to one key ('=' itself is escaped).
func key(name string) string {
	var b strings.Builder
	b.Grow(len(name))
	for i := range len(name) {
		c := name[i]
		if plain(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('=')
		b.WriteString(strings.ToUpper(hex.EncodeToString([]byte{c})))
	}
	return b.String()
}

func plain(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_'
}
