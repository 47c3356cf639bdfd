package proto

import (
	"fmt"
)

// Limits on names and ids, in bytes. Names use a small ASCII alphabet so
// that they cannot hide control characters or look-alike letters.
const (
	MinUsername   = 3
	MaxUsername   = 32
	MaxRoomName   = 64
	MaxRequestID  = 64
	MaxPeerID     = 64
	MinPassword   = 10
	MaxPassword   = 1024
	MaxSignalData = MaxMessageSize
	MaxInvite     = 64
)

// ValidUsername checks a username: 3 to 32 characters of a-z, 0-9, '_',
// '-' and '.', starting with a letter or digit. Usernames are lower case so
// that "Alice" and "alice" cannot be two accounts.
func ValidUsername(s string) error {
	if len(s) < MinUsername || len(s) > MaxUsername {
		return fmt.Errorf("username must be %d to %d characters long", MinUsername, MaxUsername)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case (c == '_' || c == '-' || c == '.') && i > 0:
		default:
			return fmt.Errorf("username may contain only a-z, 0-9, '_', '-' and '.', and must start with a letter or digit")
		}
	}
	return nil
}

// ValidPassword checks a password's length: at least 10 characters (runes),
// at most 1024 bytes.
func ValidPassword(s string) error {
	if len(s) > MaxPassword {
		return fmt.Errorf("password must be at most %d bytes", MaxPassword)
	}
	if n := len([]rune(s)); n < MinPassword {
		return fmt.Errorf("password must be at least %d characters long", MinPassword)
	}
	return nil
}

// ValidRoom checks a room name: 1 to 64 characters of A-Z, a-z, 0-9, '_',
// '-' and '.'.
func ValidRoom(s string) error {
	if len(s) == 0 || len(s) > MaxRoomName {
		return fmt.Errorf("room name must be 1 to %d characters long", MaxRoomName)
	}
	if !token(s) {
		return fmt.Errorf("room name may contain only A-Z, a-z, 0-9, '_', '-' and '.'")
	}
	if s == "." || s == ".." {
		// A URL path cleans them away (/api/rooms/.. is /api/): such a
		// room could be met in but never claimed or protected.
		return fmt.Errorf("room name must not be %q", s)
	}
	return nil
}

// ValidInvite checks an invite token: 1 to 64 characters of A-Z, a-z,
// 0-9, '_', '-' and '.' (the server makes them base64url).
func ValidInvite(s string) error {
	if len(s) == 0 || len(s) > MaxInvite || !token(s) {
		return fmt.Errorf("invite must be 1 to %d characters of A-Z, a-z, 0-9, '_', '-' and '.'", MaxInvite)
	}
	return nil
}

// token reports whether s is made only of A-Z, a-z, 0-9, '_', '-' and '.'.
func token(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// Validate checks a message sent by a client: a type clients may send, no
// from, ids within their limits, and the fields each type needs. Every
// failure is a *ProtocolError.
func (m *Message) Validate() error {
	if m.From != "" {
		return protoErr(CodeBadMessage, "from is set by the server; clients must not send it")
	}
	if len(m.ID) > MaxRequestID {
		return protoErr(CodeBadMessage, fmt.Sprintf("id must be at most %d bytes", MaxRequestID))
	}
	if m.Ref != "" {
		return protoErr(CodeBadMessage, "ref is set by the server; clients must not send it")
	}
	switch m.Type {
	case TypeJoin:
		if err := ValidRoom(m.Room); err != nil {
			return protoErr(CodeBadMessage, "join: "+err.Error())
		}
		if m.To != "" {
			return protoErr(CodeBadMessage, "join takes room and, optionally, data {\"invite\"}")
		}
		if _, err := m.JoinData(); err != nil {
			return err
		}
	case TypeLeave:
		if err := ValidRoom(m.Room); err != nil {
			return protoErr(CodeBadMessage, "leave: "+err.Error())
		}
		if m.To != "" || len(m.Data) != 0 {
			return protoErr(CodeBadMessage, "leave takes only room")
		}
	case TypeSignal:
		if m.To == "" || len(m.To) > MaxPeerID || !token(m.To) {
			return protoErr(CodeBadMessage, "signal needs to: a peer id")
		}
		if len(m.Data) == 0 || m.Data[0] != '{' {
			return protoErr(CodeBadMessage, "signal needs data: a JSON object")
		}
		if m.Room != "" {
			if err := ValidRoom(m.Room); err != nil {
				return protoErr(CodeBadMessage, "signal: "+err.Error())
			}
		}
	case TypePing:
		if m.To != "" || m.Room != "" {
			return protoErr(CodeBadMessage, "ping takes no room or to")
		}
	case TypeWelcome, TypeJoined, TypePeerJoined, TypePeerLeft, TypePresence,
		TypeAck, TypeError, TypePong, TypeReconnect:
		return protoErr(CodeUnknownType, fmt.Sprintf("%q is sent by the server, not by clients", m.Type))
	default:
		return protoErr(CodeUnknownType, fmt.Sprintf("unknown message type %q", truncate(m.Type, 32)))
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
