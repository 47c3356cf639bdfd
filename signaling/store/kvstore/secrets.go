package kvstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/khadga/khadga/signaling/store"
	"github.com/nats-io/nats.go/jetstream"
)

// secret is a record of the secrets bucket: the name (keys are escaped)
// and the value.
type secret struct {
	Name  string `json:"name"`
	Value []byte `json:"value"`
}

// Secret returns the named secret, storing generate's result if there is
// none yet; concurrent callers on any node get the one value stored.
func (s *Store) Secret(name string, generate func() ([]byte, error)) ([]byte, error) {
	var out []byte
	_, err := s.UpdateSecret(name, func(old []byte) ([]byte, error) {
		if old != nil {
			out = old
			return nil, errKeep
		}
		v, err := generate()
		if err != nil {
			return nil, fmt.Errorf("generate: %w", err)
		}
		out = v
		return v, nil
	})
	if err != nil {
		return nil, fmt.Errorf("secret %q: %w", name, err)
	}
	return bytes.Clone(out), nil
}

// errKeep is how Secret tells UpdateSecret to keep the stored secret.
var errKeep = errors.New("keep the stored secret")

// UpdateSecret replaces the named secret with fn(old) (old is nil if there
// is none) in one step, retried on conflicts, and returns the new value.
func (s *Store) UpdateSecret(name string, fn func(old []byte) ([]byte, error)) (v []byte, err error) {
	if err := store.ValidName("secret", name); err != nil {
		return nil, err
	}
	err = s.do("update_secret", s.opts.OpTimeout, func(ctx context.Context) error {
		return modify(ctx, s, "update_secret", s.secrets, key(name), true, func(sec *secret, exists bool) (bool, error) {
			var old []byte
			if exists {
				old = bytes.Clone(sec.Value)
			}
			nv, err := fn(old)
			if errors.Is(err, errKeep) {
				return false, nil
			}
			if err == nil {
				err = store.CheckSecret(nv)
			}
			if err != nil {
				return false, err
			}
			*sec, v = secret{Name: name, Value: bytes.Clone(nv)}, bytes.Clone(nv)
			return true, nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("update secret %q: %w", name, err)
	}
	return v, nil
}

// Secrets returns every named secret.
func (s *Store) Secrets() (map[string][]byte, error) {
	var all []secret
	err := s.do("secrets", s.opts.OpTimeout, func(ctx context.Context) (err error) {
		all, err = list[secret](ctx, s.secrets)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list secrets: %w", err)
	}
	out := make(map[string][]byte, len(all))
	for _, sec := range all {
		if sec.Name == "" {
			return nil, errors.New("list secrets: a record without a name")
		}
		out[sec.Name] = sec.Value
	}
	return out, nil
}

// WatchSecret calls fn with the named secret's value now, if it exists,
// and after every change any node makes, until ctx ends (see watch). fn
// runs on the watch's goroutine, one call at a time.
func (s *Store) WatchSecret(ctx context.Context, name string, fn func(value []byte)) {
	s.watch(ctx, s.secrets, key(name), func(e jetstream.KeyValueEntry) {
		if e == nil || e.Operation() != jetstream.KeyValuePut {
			return // deleted by Clear: a restore writes it again
		}
		var sec secret
		if err := json.Unmarshal(e.Value(), &sec); err != nil {
			s.log.Warn("a secret does not decode", "name", name, "err", err)
			return
		}
		fn(sec.Value)
	})
}
