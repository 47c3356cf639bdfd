package turn

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/khadga/khadga/internal/cidr"
	"github.com/prometheus/client_golang/prometheus"
)

// Defaults for the zero values of Config.
// minRelayPort is the lowest relay port a configuration may give.
const minRelayPort = 1024

const (
	DefaultListen          = "0.0.0.0:3478"
	DefaultTLSListen       = "0.0.0.0:5349"
	DefaultRelayMinPort    = 49152
	DefaultRelayMaxPort    = 65535
	DefaultRealm           = "khadga"
	DefaultCredentialTTL   = 12 * time.Hour
	DefaultUserQuota       = 10
	DefaultPermissionQuota = 64
	DefaultChannelQuota    = 64
	DefaultUserBandwidth   = 16 << 20
	DefaultMaxTCPConns     = 4096
	DefaultSocketBuffer    = 4 << 20
	DefaultPublicIPEvery   = 5 * time.Minute
)

// Limits that keep a configuration sane.
const (
	maxUDPSockets = 256
	maxSecrets    = 16
	// MinSecretLen is the shortest TURN secret accepted. Every user gets
	// an (expiry:user, HMAC) pair, which is enough to guess a weak secret
	// offline; 16 random bytes put that out of reach.
	MinSecretLen = 16
	// localAddrsEvery is how often the host's addresses are re-read.
	localAddrsEvery = 5 * time.Second
	// maxCredentialTTL keeps a leaked credential from living for ever.
	maxCredentialTTL = 30 * 24 * time.Hour
)

// Config configures a Server. The zero value of every field means its
// default; WithDefaults shows the effective values. Only Secrets is required.
// The sockets are not part of it: New takes them as Listeners.
type Config struct {
	// GetCertificate is the certificate of TURNS, required with a TLS
	// listener. It is called for every TLS handshake, so a certificate
	// manager can rotate certificates underneath.
	GetCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)

	// PublicIP is the IPv4 address given to clients as the relay address,
	// for servers behind NAT or in containers. Empty: the UDP listeners' IP,
	// or the first global address of the host when they listen on 0.0.0.0.
	PublicIP string
	// PublicIPSTUN, instead of PublicIP, names a STUN server (host:port)
	// to ask for the public IP, for a server whose address changes (a home
	// line): the relay address is what that server sees as the source of
	// a binding request from here. It is asked at start and every
	// PublicIPEvery after; a change applies to new allocations and new
	// ICE servers, open allocations keep theirs. No STUN server is ever
	// asked unless named here.
	PublicIPSTUN string
	// PublicIPEvery is how often PublicIPSTUN is asked again (default
	// DefaultPublicIPEvery; after a failure, within a minute).
	PublicIPEvery time.Duration
	// URLHost is the host put into stun:/turn:/turns: URLs. Empty: PublicIP.
	// Set it to the certificate's name when TURNS is on.
	URLHost string
	// RelayMinPort and RelayMaxPort bound the relay ports, inclusive.
	RelayMinPort int
	RelayMaxPort int

	// Realm is the TURN realm.
	Realm string
	// Secrets are the TURN REST shared secrets. Any of them is accepted; the
	// first one mints. Rotate by putting the new secret first and dropping
	// the old one after CredentialTTL.
	Secrets [][]byte
	// CredentialTTL is how long minted credentials live.
	CredentialTTL time.Duration

	// AllowPeers are CIDRs (or bare IPs) that peers may use even if a
	// built-in or DenyPeers range covers them. Allow wins over every deny.
	AllowPeers []string
	// DenyPeers are CIDRs (or bare IPs) denied on top of the built-in list.
	DenyPeers []string

	// UserQuota caps allocations per user (the user part of the REST
	// username). 0 means DefaultUserQuota, negative means no cap.
	UserQuota int
	// TotalQuota caps allocations on the server. 0 means the size of the
	// relay port range, negative means no cap.
	TotalQuota int
	// PermissionQuota caps the peer addresses of one allocation. 0 means
	// DefaultPermissionQuota, negative means no cap.
	PermissionQuota int
	// ChannelQuota caps the channels one allocation binds (ChannelBind).
	// 0 means DefaultChannelQuota, negative means no cap.
	ChannelQuota int
	// UserBandwidth caps the bytes per second one user's allocations on
	// this server relay, each direction apart (a burst of up to one
	// second's worth passes at once); datagrams over it are dropped. 0
	// means DefaultUserBandwidth, negative means no cap.
	UserBandwidth int
	// MaxTCPConns caps concurrent TCP and TLS connections per listener.
	// 0 means DefaultMaxTCPConns.
	MaxTCPConns int

	// SocketBuffer is the receive and send buffer size asked for every relay
	// socket (ListenConfig has its own for the listeners), so that bursts
	// survive a moment of scheduling delay (the kernel caps it at
	// net.core.rmem_max and wmem_max). 0 means DefaultSocketBuffer,
	// negative the OS default.
	SocketBuffer int

	// Logger receives the server's and pion's logs. Nil discards them.
	Logger *slog.Logger
	// Registerer receives the metrics. Nil leaves them unregistered.
	Registerer prometheus.Registerer

	// now is the clock for credential expiry; tests replace it.
	now func() time.Time
	// localAddrsEvery is how often the host's addresses are re-read for the
	// peer policy; tests shorten it.
	localAddrsEvery time.Duration
	// onPublicIP, if set, is told the result of every PublicIPSTUN check
	// (tests wait on it).
	onPublicIP func(netip.Addr, error)
	// authTimeout and unauthPerIP bound TCP and TLS connections that hold
	// no allocation (defaultAuthTimeout, defaultUnauthPerIP); tests change
	// them.
	authTimeout time.Duration
	unauthPerIP int
}

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.RelayMinPort == 0 {
		c.RelayMinPort = DefaultRelayMinPort
	}
	if c.RelayMaxPort == 0 {
		c.RelayMaxPort = DefaultRelayMaxPort
	}
	if c.Realm == "" {
		c.Realm = DefaultRealm
	}
	if c.CredentialTTL == 0 {
		c.CredentialTTL = DefaultCredentialTTL
	}
	if c.UserQuota == 0 {
		c.UserQuota = DefaultUserQuota
	}
	if c.TotalQuota == 0 && c.RelayMaxPort >= c.RelayMinPort {
		c.TotalQuota = c.RelayMaxPort - c.RelayMinPort + 1
	}
	if c.PermissionQuota == 0 {
		c.PermissionQuota = DefaultPermissionQuota
	}
	if c.ChannelQuota == 0 {
		c.ChannelQuota = DefaultChannelQuota
	}
	if c.UserBandwidth == 0 {
		c.UserBandwidth = DefaultUserBandwidth
	}
	if c.MaxTCPConns == 0 {
		c.MaxTCPConns = DefaultMaxTCPConns
	}
	if c.SocketBuffer == 0 {
		c.SocketBuffer = DefaultSocketBuffer
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.PublicIPEvery == 0 {
		c.PublicIPEvery = DefaultPublicIPEvery
	}
	if c.localAddrsEvery == 0 {
		c.localAddrsEvery = localAddrsEvery
	}
	if c.authTimeout == 0 {
		c.authTimeout = defaultAuthTimeout
	}
	if c.unauthPerIP == 0 {
		c.unauthPerIP = defaultUnauthPerIP
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// ErrInvalidConfig is wrapped by every error Validate returns.
var ErrInvalidConfig = errors.New("invalid TURN config")

// Validate reports every problem of the configuration (after defaults) at
// once, joined into one error that wraps ErrInvalidConfig.
func (c Config) Validate() error {
	c = c.WithDefaults()
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(format, args...))
	}
	if c.PublicIP != "" {
		if ip, err := netip.ParseAddr(c.PublicIP); err != nil || !ip.Unmap().Is4() {
			bad("public IP %q: want an IPv4 address (pion relays over UDP/IPv4)", c.PublicIP)
		}
	}
	if c.PublicIPSTUN != "" {
		if c.PublicIP != "" {
			bad("a public IP and a STUN server to discover it exclude each other")
		}
		if _, _, err := net.SplitHostPort(c.PublicIPSTUN); err != nil {
			bad("public IP STUN server %q: want host:port", c.PublicIPSTUN)
		}
		if c.PublicIPEvery < time.Second || c.PublicIPEvery > 24*time.Hour {
			bad("public IP check interval %v: want between 1s and 24h", c.PublicIPEvery)
		}
	}
	// Below 1024 are the system's services (ssh, DNS, ...): a relay socket
	// there is a typo's doing (5-51010 for 50000-51010), never a plan.
	if c.RelayMinPort < minRelayPort || c.RelayMaxPort > 65535 || c.RelayMinPort > c.RelayMaxPort {
		bad("relay ports %d-%d: want %d <= min <= max <= 65535", c.RelayMinPort, c.RelayMaxPort, minRelayPort)
	}
	errs = append(errs, validateSecrets(c.Secrets)...)
	if c.CredentialTTL < time.Minute || c.CredentialTTL > maxCredentialTTL {
		bad("credential TTL %v: want between 1m and %v", c.CredentialTTL, maxCredentialTTL)
	}
	for _, s := range c.AllowPeers {
		if _, err := cidr.Parse(s); err != nil {
			bad("allow peer: %w", err)
		}
	}
	for _, s := range c.DenyPeers {
		if _, err := cidr.Parse(s); err != nil {
			bad("deny peer: %w", err)
		}
	}
	if c.MaxTCPConns < 1 {
		bad("max TCP connections %d: want at least 1", c.MaxTCPConns)
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(errs...))
}

func validateSecrets(secrets [][]byte) []error {
	var errs []error
	if len(secrets) == 0 {
		errs = append(errs, errors.New("no TURN secret: give at least one"))
	}
	if len(secrets) > maxSecrets {
		errs = append(errs, fmt.Errorf("%d TURN secrets: at most %d", len(secrets), maxSecrets))
	}
	for i, s := range secrets {
		switch {
		case len(s) == 0:
			errs = append(errs, fmt.Errorf("TURN secret %d is empty", i+1))
		case len(s) < MinSecretLen:
			errs = append(errs, fmt.Errorf("TURN secret %d is %d bytes, want at least %d: "+
				"credentials handed to every user let anyone guess a short secret offline "+
				"(make one with: openssl rand -base64 32)", i+1, len(s), MinSecretLen))
		}
	}
	return errs
}

// parseHostPort parses "host:port" where host is an IP (or empty, meaning
// 0.0.0.0).
func parseHostPort(s string) (netip.AddrPort, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return netip.AddrPort{}, err
	}
	ip := netip.IPv4Unspecified()
	if host != "" {
		if ip, err = netip.ParseAddr(host); err != nil {
			return netip.AddrPort{}, fmt.Errorf("host must be an IP address: %w", err)
		}
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("bad port %q", port)
	}
	return netip.AddrPortFrom(ip.Unmap(), uint16(p)), nil
}
