package signaling

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/khadga/khadga/proto"
	"github.com/khadga/khadga/signaling/auth"
	"github.com/khadga/khadga/signaling/hub"
	"github.com/khadga/khadga/signaling/store"
)

// Rooms with an owner (issue 14, point 12). A room is open to anyone up to
// the member limit, which counts people, not sessions (the hub). A
// signed-in user may claim an unclaimed room name and so become its owner,
// who may lower its member cap and require an invite: a random token the
// server makes, of which the store keeps only a SHA-256. The hub asks
// roomPolicy at every join. Claims are bounded per user
// (Config.MaxOwnedRooms) and, like every change of a room, rate-limited
// per user, so that nobody claims names in bulk.

// Room changes (claims, settings, new invites, releases) per user: a burst
// of roomWriteBurst, then roomWritesPerHour. Not per address: people
// behind one NAT or proxy share one, and registrations, limited per
// address, already bound the accounts one address has.
const (
	roomWriteBurst    = 10
	roomWritesPerHour = 60
)

// inviteBytes is the randomness of an invite token: 128 bits cannot be
// guessed through joins, which are rate-limited besides.
const inviteBytes = 16

// Answer codes of the rooms API.
const (
	codeRoomOwned    = "room_owned"     // another user owns the room
	codeTooManyRooms = "too_many_rooms" // the user owns Config.MaxOwnedRooms rooms
)

// roomSettings is a room's settings as the API shows them. InviteToken is
// set only in the answer that made it: the server keeps no copy.
type roomSettings struct {
	Room        string    `json:"room"`
	Owner       string    `json:"owner"`
	MaxMembers  int       `json:"max_members"` // 0: the server's limit
	Invite      bool      `json:"invite"`      // joins need the invite token
	Created     time.Time `json:"created"`
	InviteToken string    `json:"invite_token,omitempty"`
}

func settingsOf(r store.Room) roomSettings {
	return roomSettings{Room: r.Name, Owner: r.Owner, MaxMembers: r.MaxMembers, Invite: len(r.InviteHash) > 0, Created: r.Created}
}

// roomRequest is the body of PUT /api/rooms/{name}.
type roomRequest struct {
	// MaxMembers is the room's cap on people, 1 to the server's limit, or
	// 0 for the server's limit.
	MaxMembers int `json:"max_members"`
	// Invite requires an invite to join: the room's current token is
	// kept, or one is made. False drops the requirement.
	Invite bool `json:"invite"`
}

// handleRoomGet shows a claimed room's settings to any signed-in user, so
// that clients can tell an owned room and whether it needs an invite.
func (s *Server) handleRoomGet(w http.ResponseWriter, r *http.Request) {
	_, name, ok := s.roomTarget(w, r)
	if !ok {
		return
	}
	room, err := s.store.GetRoom(name)
	if s.roomStoreError(w, err, name) {
		return
	}
	writeJSON(w, http.StatusOK, settingsOf(room))
}

// handleRoomsMine lists the rooms the caller owns.
func (s *Server) handleRoomsMine(w http.ResponseWriter, r *http.Request) {
	claims, ok := s.requireBearer(w, r)
	if !ok {
		return
	}
	rooms, err := s.store.RoomsOwnedBy(claims.User)
	if err != nil {
		s.internalError(w, "listing rooms", err)
		return
	}
	out := make([]roomSettings, 0, len(rooms))
	for _, room := range rooms {
		out = append(out, settingsOf(room))
	}
	writeJSON(w, http.StatusOK, map[string]any{"rooms": out, "max_owned": s.cfg.MaxOwnedRooms})
}

// handleRoomPut claims an unclaimed room for the caller, or changes the
// settings of one the caller owns: 201 when claimed, 200 when changed.
func (s *Server) handleRoomPut(w http.ResponseWriter, r *http.Request) {
	claims, name, ok := s.roomTarget(w, r)
	if !ok {
		return
	}
	var req roomRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if req.MaxMembers < 0 || req.MaxMembers > s.cfg.MaxRoomMembers {
		writeError(w, http.StatusBadRequest, codeBadRequest,
			fmt.Sprintf("max_members must be 1 to %d, or 0 for the server's limit", s.cfg.MaxRoomMembers))
		return
	}
	if !s.allowRoomWrite(w, claims.User) {
		return
	}
	var token string
	room, claimed, err := s.store.SetRoom(name, claims.User, s.cfg.MaxOwnedRooms, func(room *store.Room) error {
		token = "" // fn may run again (store.Backend)
		room.MaxMembers = req.MaxMembers
		switch {
		case !req.Invite:
			room.InviteHash = nil
		case len(room.InviteHash) == 0:
			token = newInvite()
			room.InviteHash = store.HashInvite(token)
		}
		return nil
	})
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusForbidden, codeUnauthorized, "only accounts may own rooms")
		return
	}
	if s.roomStoreError(w, err, name) {
		return
	}
	out := settingsOf(room)
	out.InviteToken = token
	status, kind := http.StatusOK, "room-changed"
	if claimed {
		status, kind = http.StatusCreated, "room-claimed"
	}
	s.audit(kind, claims.User, r, name)
	writeJSON(w, status, out)
}

// handleRoomInvite makes a new invite token for a room the caller owns;
// the previous one stops working. Joins need an invite from then on.
func (s *Server) handleRoomInvite(w http.ResponseWriter, r *http.Request) {
	claims, name, ok := s.roomTarget(w, r)
	if !ok || !s.allowRoomWrite(w, claims.User) {
		return
	}
	token := newInvite()
	room, err := s.store.UpdateRoom(name, claims.User, func(room *store.Room) error {
		room.InviteHash = store.HashInvite(token)
		return nil
	})
	if s.roomStoreError(w, err, name) {
		return
	}
	s.audit("room-invite", claims.User, r, name)
	out := settingsOf(room)
	out.InviteToken = token
	writeJSON(w, http.StatusOK, out)
}

// handleRoomDelete releases a room: its owner or an admin may. Members in
// it stay; later joins find it open.
func (s *Server) handleRoomDelete(w http.ResponseWriter, r *http.Request) {
	claims, name, ok := s.roomTarget(w, r)
	if !ok || !s.allowRoomWrite(w, claims.User) {
		return
	}
	owner := claims.User
	if claims.Role == proto.RoleAdmin {
		owner = "" // any owner's
	}
	if s.roomStoreError(w, s.store.DeleteRoom(name, owner), name) {
		return
	}
	s.audit("room-released", claims.User, r, name)
	w.WriteHeader(http.StatusNoContent)
}

// roomTarget is who asks (the bearer token's claims) about which room (the
// request's {name}, checked with proto's rules); it has answered 401 or
// 400 when it returns false.
func (s *Server) roomTarget(w http.ResponseWriter, r *http.Request) (auth.Claims, string, bool) {
	claims, ok := s.requireBearer(w, r)
	if !ok {
		return auth.Claims{}, "", false
	}
	name := r.PathValue("name")
	if err := proto.ValidRoom(name); err != nil {
		writeError(w, http.StatusBadRequest, codeBadRequest, err.Error())
		return auth.Claims{}, "", false
	}
	return claims, name, true
}

// allowRoomWrite applies the room-change rate of user; it has answered 429
// when it returns false.
func (s *Server) allowRoomWrite(w http.ResponseWriter, user string) bool {
	if ok, retry := s.roomWrites.Allow(user, s.cfg.Now()); !ok {
		tooMany(w, retry, "too many room changes; try again later")
		return false
	}
	return true
}

// roomStoreError answers a failed room store call; it reports whether err
// was an error.
func (s *Server) roomStoreError(w http.ResponseWriter, err error, name string) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, codeNotFound, fmt.Sprintf("room %s has no owner", name))
	case errors.Is(err, store.ErrRoomOwned):
		writeError(w, http.StatusForbidden, codeRoomOwned, fmt.Sprintf("room %s belongs to another user", name))
	case errors.Is(err, store.ErrTooManyRooms):
		writeError(w, http.StatusConflict, codeTooManyRooms,
			fmt.Sprintf("you own %d rooms, the most allowed; release one first", s.cfg.MaxOwnedRooms))
	default:
		s.internalError(w, "changing a room", err)
	}
	return true
}

// newInvite makes an invite token: base64url, within proto.ValidInvite.
func newInvite() string {
	b := make([]byte, inviteBytes)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return base64.RawURLEncoding.EncodeToString(b)
}

// roomPolicy is the hub's Config.RoomPolicy: a claimed room's owner, and
// a session whose token grants that room by name (a bot the operator made
// for it), join without an invite and past the owner's cap; everyone else
// needs the room's invite, if it has one, and counts towards its cap. It
// runs on the joining connection's reader, before any hub lock: a bbolt
// read takes microseconds and blocks nobody else.
func (s *Server) roomPolicy(room string, id hub.Identity, invite string) (int, error) {
	r, err := s.store.GetRoom(room)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return 0, nil
	case err != nil:
		return 0, err
	case r.Owner == id.User || slices.Contains(id.Rooms, room):
		return 0, nil
	case len(r.InviteHash) > 0 && invite == "":
		return 0, &proto.ProtocolError{Code: proto.CodeInviteRequired,
			Message: fmt.Sprintf("room %s needs an invite; ask its owner for the link", room)}
	case len(r.InviteHash) > 0 && !r.InviteMatches(invite):
		return 0, &proto.ProtocolError{Code: proto.CodeBadInvite,
			Message: fmt.Sprintf("that invite is not valid for room %s (wrong, or replaced by a newer one)", room)}
	}
	return r.MaxMembers, nil
}
