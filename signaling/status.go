package signaling

import (
	"net/http"
	"strings"
	"time"

	"github.com/khadga/khadga/proto"
	"github.com/khadga/khadga/signaling/store"
)

// statusAuditEvents is how many recent failures the status page lists.
const statusAuditEvents = 20

// status is what the admin status page shows.
type status struct {
	Uptime          string                `json:"uptime"`
	Rooms           int                   `json:"rooms"`
	Members         int                   `json:"members"`
	Sessions        int                   `json:"sessions"`
	Connections     int                   `json:"connections"`
	SignalsRelayed  uint64                `json:"signals_relayed"`
	TURNAllocations int                   `json:"turn_allocations"`
	Errors          map[proto.Code]uint64 `json:"errors"`
	RecentFailures  []store.AuditEvent    `json:"recent_failures"`
}

// handleStatus serves the live status to users with the admin role.
func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	claims, ok := s.requireBearer(w, r)
	if !ok {
		return
	}
	if claims.Role != proto.RoleAdmin {
		writeError(w, http.StatusForbidden, codeUnauthorized, "the status page is for admins")
		return
	}
	st := s.hub.Stats()
	out := status{
		Uptime: time.Since(s.started).Round(time.Second).String(),
		Rooms:  st.Rooms, Members: st.Members, Sessions: st.Sessions, Connections: st.Connections,
		SignalsRelayed: st.SignalsRelayed, Errors: st.Errors, RecentFailures: []store.AuditEvent{},
	}
	if s.cfg.TURNAllocations != nil {
		out.TURNAllocations = s.cfg.TURNAllocations()
	}
	events, err := s.store.AuditLog(500)
	if err != nil {
		s.internalError(w, "reading the audit log", err)
		return
	}
	for _, ev := range events {
		if (strings.Contains(ev.Kind, "failed") || strings.Contains(ev.Kind, "reuse")) && len(out.RecentFailures) < statusAuditEvents {
			out.RecentFailures = append(out.RecentFailures, ev)
		}
	}
	writeJSON(w, http.StatusOK, out)
}
