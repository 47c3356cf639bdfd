package cluster

import (
	"encoding/json"

	"github.com/nats-io/nats.go"
)

// A WebSocket ticket lives in the memory of the node that issued it, for
// a few seconds, and is good once. Behind a load balancer a browser's
// ticket request and its WebSocket often reach different nodes, so the
// node that gets a ticket it did not issue asks the one that did, on that
// node's ticket subject; the issuer redeems it as if presented there (it
// is spent, and its account checked) and answers with its claims. The
// ticket names its node, so this costs one NATS round trip only when the
// two requests were split. A ticket whose node is gone is refused, as an
// expired one is: the client asks for another.

type ticketRequest struct {
	Ticket string `json:"ticket"`
}

type ticketReply struct {
	OK     bool            `json:"ok"`
	Claims json.RawMessage `json:"claims,omitempty"`
}

// ServeTickets has this node redeem, for the others, the tickets it
// issued: redeem spends one and returns its claims, encoded. Call it
// before Start.
func (n *Node) ServeTickets(redeem func(ticket string) (claims []byte, ok bool)) {
	n.redeem = redeem
}

// RedeemTicket asks node, which issued ticket, to redeem it, and returns
// its claims as redeem encoded them. It reports false if node refused it,
// or did not answer within ClaimTimeout.
func (n *Node) RedeemTicket(node, ticket string) ([]byte, bool) {
	if !validToken(node) {
		return nil, false
	}
	req, _ := json.Marshal(ticketRequest{Ticket: ticket})
	m, err := n.nc.Request(n.subject("node", node, "ticket"), req, n.cfg.ClaimTimeout)
	if err != nil {
		n.stats.tickets.WithLabelValues("no_answer").Inc()
		return nil, false
	}
	var r ticketReply
	if json.Unmarshal(m.Data, &r) != nil || !r.OK || len(r.Claims) == 0 {
		n.stats.tickets.WithLabelValues("refused").Inc()
		return nil, false
	}
	n.stats.tickets.WithLabelValues("redeemed").Inc()
	return r.Claims, true
}

// onTicket answers another node's request to redeem a ticket of this one.
func (n *Node) onTicket(m *nats.Msg) {
	var req ticketRequest
	if json.Unmarshal(m.Data, &req) != nil {
		n.stats.badMessages.Inc()
		return
	}
	var r ticketReply
	if n.redeem != nil {
		r.Claims, r.OK = n.redeem(req.Ticket)
	}
	b, _ := json.Marshal(r)
	if err := m.Respond(b); err != nil {
		n.stats.publishErrors.Inc()
	}
}
