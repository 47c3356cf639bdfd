package proto

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// Decode parses one message of at most limit bytes (limit <= 0 means
// MaxMessageSize). It refuses oversized input, invalid UTF-8, anything but a
// single JSON object, unknown envelope fields and versions newer than
// Version. Every failure is a *ProtocolError. Decode does not check what the
// type allows; see Validate.
func Decode(b []byte, limit int) (*Message, error) {
	if limit <= 0 {
		limit = MaxMessageSize
	}
	if len(b) > limit {
		return nil, protoErr(CodeTooLarge, fmt.Sprintf("message is %d bytes, limit %d", len(b), limit))
	}
	if !utf8.Valid(b) {
		return nil, protoErr(CodeBadMessage, "message is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var m Message
	if err := dec.Decode(&m); err != nil {
		return nil, protoErr(CodeBadMessage, "invalid message: "+DescribeJSONError(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, protoErr(CodeBadMessage, "invalid message: data after the JSON object")
	}
	if m.Type == "" {
		e := protoErr(CodeBadMessage, "missing type")
		e.ID = shortID(m.ID)
		return nil, e
	}
	if m.V < 0 || m.V > Version {
		e := protoErr(CodeUnsupportedVersion, fmt.Sprintf("version %d is not supported; this server speaks %d", m.V, Version))
		e.ID = shortID(m.ID)
		return nil, e
	}
	return &m, nil
}

// DescribeJSONError turns an encoding/json error into short, stable text
// that is safe to send back to a client.
func DescribeJSONError(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "truncated or empty JSON"
	case errors.As(err, &syn):
		return fmt.Sprintf("syntax error at byte %d", syn.Offset)
	case errors.As(err, &typ):
		if typ.Field != "" {
			return fmt.Sprintf("field %q must be %s, not %s", typ.Field, typ.Type, typ.Value)
		}
		return fmt.Sprintf("expected %s, not %s", typ.Type, typ.Value)
	default:
		return err.Error()
	}
}

// shortID is id if it is short enough to echo back, else empty.
func shortID(id string) string {
	if len(id) > MaxRequestID {
		return ""
	}
	return id
}
