package kvstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/khadga/khadga/signaling/store"
	"github.com/nats-io/nats.go/jetstream"
)

// CreateBotToken stores a new bot token. The bound of store.MaxBotTokens
// is checked from a listing just before the write, so tokens created at
// the same moment on several nodes may pass it by a few.
func (s *Store) CreateBotToken(t store.BotToken) error {
	t, err := t.Checked(time.Now())
	if err != nil {
		return err
	}
	err = s.do("create_bot_token", s.opts.OpTimeout, func(ctx context.Context) error {
		keys, err := s.bots.ListKeys(ctx)
		if err != nil {
			return err
		}
		n := 0
		for range keys.Keys() {
			n++
		}
		if n >= store.MaxBotTokens {
			return store.ErrTooManyBotTokens
		}
		return modify(ctx, s, "create_bot_token", s.bots, key(t.ID), true, func(v *store.BotToken, exists bool) (bool, error) {
			if exists {
				return false, fmt.Errorf("%w: id taken", store.ErrInvalid)
			}
			*v = t
			return true, nil
		})
	})
	if err != nil {
		return fmt.Errorf("create bot token: %w", err)
	}
	return nil
}

// GetBotToken returns the bot token or store.ErrNotFound.
func (s *Store) GetBotToken(id string) (t store.BotToken, err error) {
	err = s.do("get_bot_token", s.opts.OpTimeout, func(ctx context.Context) error {
		_, err := get(ctx, s.bots, key(id), &t)
		return err
	})
	if err != nil {
		return store.BotToken{}, fmt.Errorf("get bot token: %w", err)
	}
	return t, nil
}

// ListBotTokens returns every bot token, by user, then creation time.
func (s *Store) ListBotTokens() (ts []store.BotToken, err error) {
	err = s.do("list_bot_tokens", listTimeout, func(ctx context.Context) error {
		ts, err = list[store.BotToken](ctx, s.bots)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list bot tokens: %w", err)
	}
	store.SortBotTokens(ts)
	return ts, nil
}

// UpdateBotToken applies fn to the token in one step, retried on
// conflicts; fn may not change its identity (store.BotToken.SameIdentity).
func (s *Store) UpdateBotToken(id string, fn func(*store.BotToken) error) (t store.BotToken, err error) {
	err = s.do("update_bot_token", s.opts.OpTimeout, func(ctx context.Context) error {
		return modify(ctx, s, "update_bot_token", s.bots, key(id), false, func(v *store.BotToken, _ bool) (bool, error) {
			was := *v
			if err := fn(v); err != nil {
				return false, err
			}
			if err := v.SameIdentity(was); err != nil {
				return false, err
			}
			t = *v
			return true, nil
		})
	})
	if err != nil {
		return store.BotToken{}, fmt.Errorf("update bot token: %w", err)
	}
	return t, nil
}

// PurgeExpiredBotTokens deletes every bot token whose Expires is at or
// before now and returns how many it deleted.
func (s *Store) PurgeExpiredBotTokens(now time.Time) (n int, err error) {
	err = s.do("purge_expired_bot_tokens", listTimeout, func(ctx context.Context) error {
		ts, err := list[store.BotToken](ctx, s.bots)
		if err != nil {
			return err
		}
		for _, t := range ts {
			if now.Before(t.Expires) {
				continue
			}
			err := remove(ctx, s, "purge_expired_bot_tokens", s.bots, key(t.ID), func(v *store.BotToken) error {
				if now.Before(v.Expires) {
					return errKeep // extended meanwhile
				}
				return nil
			})
			switch {
			case err == nil:
				n++
			case !isGone(err):
				return err
			}
		}
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("purge expired bot tokens: %w", err)
	}
	return n, nil
}

// isGone reports an error that means the record is not there (any more),
// or that it was kept on purpose.
func isGone(err error) bool {
	return errors.Is(err, store.ErrNotFound) || errors.Is(err, errKeep) || errors.Is(err, jetstream.ErrKeyNotFound)
}
