package cluster

import "github.com/nats-io/nats.go"

// News for every node from the packages above the hub: the server tells
// the others what its limiters counted (package signaling's limits.go),
// so that a client whom a load balancer spreads over the nodes has one
// budget, not one per node. Tell publishes on the subject
// PREFIX.tell.TOPIC.NODE, and a node that Listens to TOPIC gets what the
// others tell, never its own. Delivery is NATS core's: at most once, in
// order from one node, lost while NATS is away.

// maxTell bounds one piece of news, sent or received.
const maxTell = 4 << 10

// Listen has f receive what the other nodes Tell on topic (a NATS subject
// token: letters, digits, '-' and '_'). Call it before Start. f runs on
// the subscription's goroutine, one piece at a time, and must not block.
func (n *Node) Listen(topic string, f func(data []byte)) {
	if n.listens == nil {
		n.listens = map[string]func([]byte){}
	}
	n.listens[topic] = f
}

// Tell sends data to the other nodes that Listen to topic, without
// waiting; the caller must not change data afterwards. It reports false
// when data is over 4 KiB or the outbox is full: the others do not hear
// of it.
func (n *Node) Tell(topic string, data []byte) bool {
	if len(data) > maxTell || !validToken(topic) {
		return false
	}
	return n.out.publish(n.subject("tell", topic, n.id), data)
}

// listen subscribes to the topics Listen named.
func (n *Node) listen() error {
	for topic, f := range n.listens {
		if !validToken(topic) {
			return errBadTopic(topic)
		}
		own := n.subject("tell", topic, n.id)
		if err := n.subscribe(n.subject("tell", topic, "*"), func(m *nats.Msg) {
			switch {
			case m.Subject == own:
			case len(m.Data) > maxTell:
				n.stats.badMessages.Inc()
			default:
				f(m.Data)
			}
		}); err != nil {
			return err
		}
	}
	return nil
}

type errBadTopic string

func (e errBadTopic) Error() string { return "cluster: not a valid topic: " + string(e) }
