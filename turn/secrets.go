package turn

import (
	"bytes"
	"fmt"
	"log/slog"
	"sync/atomic"
)

// secretSet holds the REST secrets in use. SetSecrets swaps the whole list
// while the server runs; every reader loads it once per message, so a
// message is checked against one list, old or new.
type secretSet struct{ p atomic.Pointer[[][]byte] }

func newSecretSet(secrets [][]byte) *secretSet {
	s := &secretSet{}
	s.store(secrets)
	return s
}

func (s *secretSet) load() [][]byte { return *s.p.Load() }

func (s *secretSet) store(secrets [][]byte) {
	cp := make([][]byte, len(secrets))
	for i, v := range secrets {
		cp[i] = bytes.Clone(v)
	}
	s.p.Store(&cp)
}

// index is where secret sits in list, -1 if it is not there.
func index(list [][]byte, secret []byte) int {
	for i, v := range list {
		if bytes.Equal(v, secret) {
			return i
		}
	}
	return -1
}

// SetSecrets replaces the REST secrets while the server runs, as Config's
// Secrets: the first mints (ICEServers), every one is accepted. Open
// allocations are not touched: a client's later requests (refreshes,
// permissions, channel binds) authenticate with the credentials it
// allocated with, so keep the secret that minted them in the list until
// they expire (CredentialTTL) and add the new one in front. It refuses a
// list Validate would refuse, and then nothing changes.
func (s *Server) SetSecrets(secrets [][]byte) error {
	if errs := validateSecrets(secrets); len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, errs[0])
	}
	s.secrets.store(secrets)
	s.checker.forget()
	s.log.Info("TURN secrets replaced", slog.Int("secrets", len(secrets)))
	return nil
}
