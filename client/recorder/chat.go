package recorder

import (
	"log/slog"
	"sync"
	"time"

	"github.com/khadga/khadga/client"
)

// Chat budget. A room member decides how much text it sends the
// recorder, and every line it sends goes to the chat log: without a
// limit one member could fill the recorder's disk at the speed of its
// data channel, which stops every track's recording (a failed write loses
// its clip) for as long as the flood goes on. So each user's lines, over
// all of its sessions, take from a budget of bytes of the chat log;
// lines past it are dropped, counted, and logged once a user.
const (
	// chatRate is the chat log one user may fill a second once its
	// chatBurst is spent: far more than people type, and less than a
	// tenth of what one video track takes at the default size and rate.
	chatRate  = 64 << 10
	chatBurst = 1 << 20
	// maxChatUsers bounds the budgets a room keeps; users past it, while
	// every budget is in use, share one.
	maxChatUsers = maxPeersPerRoom
)

// chatBudgets are a room's chat budgets, by user.
type chatBudgets struct {
	mu     sync.Mutex
	users  map[string]*chatBucket
	shared chatBucket
}

// chatBucket is one token bucket of chat log bytes.
type chatBucket struct {
	tokens float64
	at     time.Time // of the last take; zero: full
	warned bool
}

// refill brings b's tokens up to now.
func (b *chatBucket) refill(now time.Time) {
	if b.at.IsZero() {
		b.tokens = chatBurst
	} else {
		b.tokens = min(chatBurst, b.tokens+now.Sub(b.at).Seconds()*chatRate)
	}
	b.at = now
}

// take spends n bytes of user's budget if it has them, and reports
// whether it did; warn is true the first time the user is refused.
func (c *chatBudgets) take(user string, n int, now time.Time) (ok, warn bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.users[user]
	if b == nil {
		if c.users == nil {
			c.users = make(map[string]*chatBucket)
		}
		if len(c.users) >= maxChatUsers {
			// A bucket refilled to the brim is as good as a new one.
			for u, old := range c.users {
				if old.refill(now); old.tokens >= chatBurst {
					delete(c.users, u)
				}
			}
		}
		if len(c.users) < maxChatUsers {
			b = &chatBucket{}
			c.users[user] = b
		} else {
			b = &c.shared
		}
	}
	b.refill(now)
	if float64(n) > b.tokens {
		warn = !b.warned
		b.warned = true
		return false, warn
	}
	b.tokens -= float64(n)
	return true, false
}

// chat appends a member's text to the room's chat log, within its user's
// budget.
func (rr *roomRec) chat(e *client.Message) {
	b, err := chatJSON(ChatLine{Time: time.Now().UTC(), Peer: e.From.Peer, User: e.From.User, Text: e.Text})
	if err != nil {
		rr.log.Error("chat not written", slog.Any("err", err))
		return
	}
	user := "user " + e.From.User
	if e.From.User == "" {
		user = "peer " + e.From.Peer // its details have not come yet
	}
	ok, warn := rr.chatBudget.take(user, len(b)+1, time.Now())
	if !ok {
		rr.chatDropped.Add(1)
		if warn {
			rr.log.Warn("dropping chat past the user's budget", slog.String("peer", e.From.Peer),
				slog.String("user", e.From.User), slog.Int("bytes_per_second", chatRate), slog.Int("burst", chatBurst))
		}
		return
	}
	if err := rr.out.appendChat(b); err != nil {
		rr.log.Error("chat not written", slog.Any("err", err))
	}
}
