package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// refreshMargin is how long before expiry the client refreshes its access
// token; a token whose lifetime is unknown is refreshed every refreshEvery.
const (
	refreshMargin = 60 * time.Second
	refreshEvery  = 10 * time.Minute
)

// refreshLoop keeps the access token fresh, so that a reconnect can always
// authenticate. Without a refresh token there is nothing to do.
func (c *Client) refreshLoop() {
	defer c.wg.Done()
	failures := 0
	for {
		t := c.Tokens()
		if t.Refresh == "" {
			return
		}
		wait := refreshEvery
		if !t.Expiry.IsZero() {
			// Refresh at 80% of the remaining lifetime, or a margin
			// before expiry if that is later than halfway.
			left := time.Until(t.Expiry)
			wait = left * 4 / 5
			if m := left - refreshMargin; m < wait && m > left/2 {
				wait = m
			}
		}
		if failures > 0 {
			wait = c.backoff(failures)
		}
		wait = max(wait, time.Second)
		timer := time.NewTimer(wait)
		select {
		case <-c.ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
		switch err := c.refreshNow(); {
		case err == nil:
			failures = 0
		case errors.Is(err, ErrUnauthorized):
			c.log.Error("refresh token refused; the client can no longer reconnect after a drop", slog.Any("err", err))
			return
		default:
			failures++
			c.log.Warn("token refresh failed", slog.Any("err", err))
		}
	}
}

// refreshNow rotates the tokens, one refresh at a time: one that waited
// for another does nothing, as the tokens it would present are spent.
func (c *Client) refreshNow() error {
	seen := c.Tokens().Refresh
	c.refreshMu.Lock()
	defer c.refreshMu.Unlock()
	t := c.Tokens()
	if t.Refresh != seen {
		return nil // another refresh rotated the tokens while this one waited
	}
	ctx, cancel := context.WithTimeout(c.ctx, 30*time.Second)
	defer cancel()
	nt, err := c.rotate(ctx, t)
	if err != nil {
		return err
	}
	c.setTokens(nt)
	c.log.Debug("access token refreshed", slog.Time("expiry", nt.Expiry))
	return nil
}

// rotate trades t for new tokens: with WithTokenRefresher's function if
// one was given, else over /api/refresh.
func (c *Client) rotate(ctx context.Context, t Tokens) (Tokens, error) {
	if c.opts.refresher != nil {
		return c.opts.refresher(ctx, t)
	}
	return Refresh(ctx, c.opts.hc, c.server, t.Refresh)
}

// ensureFreshToken refreshes before a reconnect when the access token is
// about to expire.
func (c *Client) ensureFreshToken() {
	t := c.Tokens()
	if t.Refresh == "" || t.Expiry.IsZero() || time.Until(t.Expiry) > refreshMargin/2 {
		return
	}
	if err := c.refreshNow(); err != nil {
		c.log.Warn("token refresh before reconnect failed", slog.Any("err", err))
	}
}

// forceRefresh refreshes after the server refused the access token to a
// reconnect, the refused-th time in a row (dialErr). It returns an error
// wrapping ErrSignedOut when no reconnect can succeed: the refresh token
// was refused too, or there is none and the access token was refused
// twice in a row (once may be a node of a cluster that has not heard of a
// new signing key yet). Anything else (the refresh failed on the way) is
// tried again with the next reconnect.
func (c *Client) forceRefresh(dialErr error, refused int) error {
	if c.Tokens().Refresh == "" {
		if refused < 2 {
			return nil
		}
		return fmt.Errorf("%w: %w", ErrSignedOut, dialErr)
	}
	err := c.refreshNow()
	if errors.Is(err, ErrUnauthorized) {
		return fmt.Errorf("%w: the refresh token was refused: %w", ErrSignedOut, err)
	}
	if err != nil {
		c.log.Warn("token refresh after 401 failed", slog.Any("err", err))
	}
	return nil
}
