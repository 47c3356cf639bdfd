package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/khadga/khadga/client"
)

// storeFile holds the tokens, readable by the user only.
const storeFile = "tokens.json"

type store struct {
	Server  string    `json:"server"`
	User    string    `json:"user"`
	Access  string    `json:"access_token"`
	Refresh string    `json:"refresh_token"`
	Expiry  time.Time `json:"expiry"`
}

func loadStore(dir string) (*store, error) {
	b, err := os.ReadFile(filepath.Join(dir, storeFile))
	if err != nil {
		return nil, err
	}
	var s store
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("read %s: %w", storeFile, err)
	}
	return &s, nil
}

// saveStore writes the tokens atomically with mode 0600 in a 0700 dir.
func saveStore(dir string, s *store) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("make config dir: %w", err)
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, storeFile+".*")
	if err != nil {
		return fmt.Errorf("save tokens: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("save tokens: %w", err)
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("save tokens: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save tokens: %w", err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, storeFile)); err != nil {
		return fmt.Errorf("save tokens: %w", err)
	}
	return nil
}

// sharedTokens rotates the stored sign-in, which several khadga-peer
// processes may hold at once (chat in one terminal, recv in another).
// Each started with the same refresh token, and a refresh token is spent
// once used: a second process that presented it too would look like a
// thief to the server, which then ends the sign-in everywhere (both
// processes signed out at the first refresh). So a rotation runs under
// an exclusive lock on the config dir, takes the stored tokens when
// another process rotated them already, and otherwise refreshes the
// latest stored ones and saves the result before it lets go.
type sharedTokens struct {
	dir, server string
	signIn      store // as loaded: whose tokens these are
	log         *slog.Logger
}

// adoptFor is how long tokens another process rotated must still be good
// to be taken as they are; the client refreshes at 30 s at the latest.
const adoptFor = 45 * time.Second

func (s *sharedTokens) refresh(ctx context.Context, current client.Tokens) (client.Tokens, error) {
	unlock, err := lockStore(s.dir)
	if err != nil {
		return client.Tokens{}, fmt.Errorf("lock the stored tokens: %w", err)
	}
	defer unlock()
	latest := current
	if st, err := loadStore(s.dir); err == nil && st.User == s.signIn.User && st.Server == s.signIn.Server && st.Refresh != "" {
		latest = client.Tokens{Access: st.Access, Refresh: st.Refresh, Expiry: st.Expiry}
	}
	if latest.Refresh != current.Refresh && time.Until(latest.Expiry) > adoptFor {
		return latest, nil // rotated by another process
	}
	nt, err := client.Refresh(ctx, &http.Client{Timeout: 30 * time.Second}, s.server, latest.Refresh)
	if err != nil {
		return client.Tokens{}, err
	}
	st := s.signIn
	st.Access, st.Refresh, st.Expiry = nt.Access, nt.Refresh, nt.Expiry
	if err := saveStore(s.dir, &st); err != nil {
		s.log.Warn("could not save the refreshed tokens", slog.Any("err", err))
	}
	return nt, nil
}
