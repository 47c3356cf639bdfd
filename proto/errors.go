package proto

// Code is a stable error code carried in error messages. Clients switch on it;
// the message text is for people and may change.
type Code string

// Error codes.
const (
	// CodeBadMessage: malformed JSON, a missing or invalid field, or a
	// client-supplied from.
	CodeBadMessage Code = "bad_message"
	// CodeTooLarge: the message is over the size limit.
	CodeTooLarge Code = "too_large"
	// CodeUnknownType: the type is not one the server accepts from clients.
	CodeUnknownType Code = "unknown_type"
	// CodeNotInRoom: the sender is not in the room, or sender and target
	// share no room.
	CodeNotInRoom Code = "not_in_room"
	// CodeUnknownPeer: no session has that peer id (or it has ended).
	CodeUnknownPeer Code = "unknown_peer"
	// CodeUnauthorized: the session's token does not allow this (a room the
	// token is not granted, for example).
	CodeUnauthorized Code = "unauthorized"
	// CodeRateLimited: the connection sends faster than its limit.
	CodeRateLimited Code = "rate_limited"
	// CodeUnsupportedVersion: the message's v is newer than the server's.
	CodeUnsupportedVersion Code = "unsupported_version"
	// CodeRoomFull: the room has as many people as it allows (the
	// server's limit, or a lower one its owner set). People count once,
	// however many sessions they have in the room.
	CodeRoomFull Code = "room_full"
	// CodeInviteRequired: the room's owner requires an invite, and the
	// join carried none.
	CodeInviteRequired Code = "invite_required"
	// CodeBadInvite: the join's invite is not the room's current one (a
	// wrong link, or the owner made a new one or dropped the invite).
	CodeBadInvite Code = "bad_invite"
	// CodeTooManyRooms: the session is in as many rooms as the server allows.
	CodeTooManyRooms Code = "too_many_rooms"
	// CodePeerUnavailable: the target's queue is full; the signal was dropped.
	CodePeerUnavailable Code = "peer_unavailable"
	// CodeInternal: the server failed; the request may be retried.
	CodeInternal Code = "internal"
	// CodeRevoked: the session's credentials were revoked (signed out,
	// account disabled or deleted, role changed, signing key retired). It
	// comes just before the server closes with CloseRevoked; the message
	// says why.
	CodeRevoked Code = "revoked"
)

// CloseRevoked is the WebSocket close code of a session whose credentials
// were revoked, with the reason in the close frame. Reconnecting needs
// valid credentials: a client that can refresh its tokens gets a new
// session (with its current role and rooms); one that cannot is signed out.
const CloseRevoked = 4401

// CloseTooManyConnections is the WebSocket close code of a connection over
// the user's limit of open connections (hub.Config.MaxConnsPerUser); close
// another first.
const CloseTooManyConnections = 4429

// ProtocolError is a decoding or validation failure with the code the server
// answers it with.
type ProtocolError struct {
	Code    Code
	Message string
	// ID is the id of the offending message when its envelope could be
	// read, so that the error sent back can name it in ref.
	ID string
}

func (e *ProtocolError) Error() string { return string(e.Code) + ": " + e.Message }

func protoErr(code Code, msg string) *ProtocolError {
	return &ProtocolError{Code: code, Message: msg}
}
