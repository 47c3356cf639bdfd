package auth

import (
	"errors"

	"github.com/khadga/khadga/signaling/store"
)

// A bot goes by a name, the user of its tokens. The first token minted
// for a name that is no account holds the name (store.User.Bot): nobody
// can register it, pass for the bot in a room by name, or use up the
// connections the name may open. An account's name is the admin's to share
// with a bot, on purpose only (admin.TokenRequest.ShareAccount).

// HoldName holds name for bots unless an account (or a held name) has it.
func (b *Bots) HoldName(name string) error {
	err := b.st.CreateUser(store.User{Name: name, Bot: true, Created: b.opts.Now().UTC()})
	if errors.Is(err, store.ErrUserExists) {
		return nil
	}
	return err
}

// Live counts the tokens of name that still work: not revoked, not
// expired.
func (b *Bots) Live(name string) (int, error) {
	ts, err := b.st.ListBotTokens()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, t := range ts {
		if t.User == name && b.alive(t) {
			n++
		}
	}
	return n, nil
}

func (b *Bots) alive(t store.BotToken) bool {
	return t.Revoked.IsZero() && b.opts.Now().Before(t.Expires)
}

// HoldLiveNames holds the names of the live tokens minted before names
// were held, as a server does when it starts and every hour. It returns
// how many names it held afresh.
func (b *Bots) HoldLiveNames() (int, error) {
	ts, err := b.st.ListBotTokens()
	if err != nil {
		return 0, err
	}
	seen, n := map[string]bool{}, 0
	for _, t := range ts {
		if seen[t.User] || !b.alive(t) {
			continue
		}
		seen[t.User] = true
		switch _, err := b.st.GetUser(t.User); {
		case err == nil:
			continue // an account, or a name held already
		case !errors.Is(err, store.ErrNotFound):
			return n, err
		}
		if err := b.HoldName(t.User); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}
