package client

import (
	"context"
	"errors"
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

func (c *Client) refreshNow() error {
	t := c.Tokens()
	ctx, cancel := context.WithTimeout(c.ctx, 30*time.Second)
	defer cancel()
	nt, err := Refresh(ctx, c.opts.hc, c.server, t.Refresh)
	if err != nil {
		return err
	}
	c.setTokens(nt)
	c.log.Debug("access token refreshed", slog.Time("expiry", nt.Expiry))
	return nil
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

// forceRefresh refreshes after the server refused the access token.
func (c *Client) forceRefresh() {
	if c.Tokens().Refresh == "" {
		return
	}
	if err := c.refreshNow(); err != nil {
		c.log.Warn("token refresh after 401 failed", slog.Any("err", err))
	}
}
