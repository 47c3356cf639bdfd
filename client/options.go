package client

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/pion/webrtc/v4"
)

// Option changes how Dial sets up a Client.
type Option func(*options)

type options struct {
	log         *slog.Logger
	hc          *http.Client
	se          *webrtc.SettingEngine
	relayOnly   bool
	noPresence  bool
	backoffMin  time.Duration
	backoffMax  time.Duration
	maxFileSize int64
	// fileIdle is how long an accepted incoming transfer waits for the
	// sender's next message (file.go).
	fileIdle     time.Duration
	eventBuffer  int
	onTokens     func(Tokens)
	refresher    func(context.Context, Tokens) (Tokens, error)
	joinTimeout  time.Duration
	dialTimeout  time.Duration
	pingInterval time.Duration
	videoCodecs  []string // nil: pion's defaults
	// netWatchEvery is how often the host's addresses are read
	// (netwatch.go); 0 turns the watch off.
	netWatchEvery time.Duration
}

func defaultOptions() *options {
	return &options{
		log:           slog.New(slog.DiscardHandler),
		hc:            &http.Client{Timeout: 30 * time.Second},
		backoffMin:    250 * time.Millisecond,
		backoffMax:    15 * time.Second,
		maxFileSize:   4 << 30,
		fileIdle:      fileAnswerTimeout,
		eventBuffer:   1024,
		joinTimeout:   15 * time.Second,
		dialTimeout:   15 * time.Second,
		pingInterval:  20 * time.Second,
		netWatchEvery: netWatchEvery,
	}
}

// WithNetworkWatch sets how often the client reads the host's addresses
// to notice a move to another network where the system does not tell of
// changes (default 500 ms; on Linux the kernel's notices are used instead;
// see netwatch.go), or turns the watch off with 0. When one of them is gone, the client
// restarts ICE with its peers at once instead of waiting seconds for ICE
// to find their paths dead.
func WithNetworkWatch(every time.Duration) Option {
	return func(o *options) { o.netWatchEvery = max(every, 0) }
}

// WithLogger sets the logger for the client and, bridged, for pion.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithHTTPClient sets the HTTP client for the API calls.
func WithHTTPClient(hc *http.Client) Option { return func(o *options) { o.hc = hc } }

// WithSettingEngine sets pion's SettingEngine (for example to include
// loopback candidates in tests). The client sets its LoggerFactory, and
// its Net (UDP sockets with larger receive buffers) unless se has one.
func WithSettingEngine(se webrtc.SettingEngine) Option {
	return func(o *options) { o.se = &se }
}

// WithRelayOnly makes every peer connection use TURN relays only
// (ICETransportPolicy "relay"), hiding this peer's addresses from others.
func WithRelayOnly() Option { return func(o *options) { o.relayOnly = true } }

// WithoutPresence asks the server not to send the online list (for bots).
func WithoutPresence() Option { return func(o *options) { o.noPresence = true } }

// WithReconnectBackoff sets the first and the longest wait between
// reconnection attempts. Each wait doubles, with jitter.
func WithReconnectBackoff(first, max time.Duration) Option {
	return func(o *options) { o.backoffMin, o.backoffMax = first, max }
}

// WithMaxFileSize sets the largest file accepted from a peer (default 4 GiB).
func WithMaxFileSize(n int64) Option { return func(o *options) { o.maxFileSize = n } }

// WithEventBuffer sets the size of each event channel (default 1024).
func WithEventBuffer(n int) Option { return func(o *options) { o.eventBuffer = n } }

// WithTokenCallback is called (from the client's goroutine) whenever the
// client obtains new tokens, so that a program can store them.
func WithTokenCallback(f func(Tokens)) Option { return func(o *options) { o.onTokens = f } }

// WithTokenRefresher makes the client rotate its tokens with f instead of
// calling Refresh itself: f gets the current tokens and returns the next.
// Programs whose processes share one sign-in (a token file, as
// khadga-peer's) rotate under a lock and take the tokens another process
// rotated already: a refresh token is spent once used, and a spent one
// presented again ends the sign-in on every device.
func WithTokenRefresher(f func(ctx context.Context, current Tokens) (Tokens, error)) Option {
	return func(o *options) { o.refresher = f }
}

// WithVideoCodecs limits the video codecs this client offers and accepts
// to the given MIME types (webrtc.MimeTypeVP8, webrtc.MimeTypeVP9), so that
// a peer that can decode only those (the recorder) is never sent another.
// Audio is Opus. An empty list means no video codec at all.
func WithVideoCodecs(mimeTypes ...string) Option {
	return func(o *options) { o.videoCodecs = append([]string{}, mimeTypes...) }
}
