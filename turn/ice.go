package turn

import (
	"net"
	"strconv"
	"time"

	"github.com/khadga/khadga/proto"
)

// ICEConfig describes how clients reach a TURN server, so a signaling
// server can hand out fresh credentials whether it runs the TURN server
// itself (Server.ICEConfig) or the TURN nodes run elsewhere with the same
// secret.
type ICEConfig struct {
	// Host goes into the URLs: an IP or a DNS name (a name is needed for
	// turns: so that the certificate checks out).
	Host string
	// UDPPort, TCPPort and TLSPort are the ports offered; 0 leaves the
	// transport out.
	UDPPort, TCPPort, TLSPort int
	// Secret mints the credentials (the first of the server's secrets).
	Secret []byte
	// TTL is the credentials' lifetime.
	TTL time.Duration
}

// ICEServers returns the RTCIceServer entries for user, with credentials
// minted now, and when they expire: one stun: entry without credentials
// (when UDP is on) and one entry with a turn: URL per transport and turns:
// when TLS is on.
func (c ICEConfig) ICEServers(user string, now time.Time) ([]proto.ICEServer, time.Time) {
	var out []proto.ICEServer
	if c.UDPPort != 0 {
		out = append(out, proto.ICEServer{URLs: []string{"stun:" + c.hostPort(c.UDPPort)}})
	}
	var urls []string
	if c.UDPPort != 0 {
		urls = append(urls, "turn:"+c.hostPort(c.UDPPort)+"?transport=udp")
	}
	if c.TCPPort != 0 {
		urls = append(urls, "turn:"+c.hostPort(c.TCPPort)+"?transport=tcp")
	}
	if c.TLSPort != 0 {
		urls = append(urls, "turns:"+c.hostPort(c.TLSPort)+"?transport=tcp")
	}
	if len(urls) == 0 {
		return out, time.Time{}
	}
	username, password, expires := Mint(c.Secret, user, c.TTL, now)
	out = append(out, proto.ICEServer{URLs: urls, Username: username, Credential: password})
	return out, expires
}

func (c ICEConfig) hostPort(port int) string {
	return net.JoinHostPort(c.Host, strconv.Itoa(port))
}

// ICEConfig describes this server with the ports it actually bound.
func (s *Server) ICEConfig() ICEConfig {
	host := s.cfg.URLHost
	if host == "" {
		host = s.RelayIP().String()
	}
	c := ICEConfig{
		Host:    host,
		UDPPort: s.UDPAddr().Port,
		Secret:  s.secrets.load()[0],
		TTL:     s.cfg.CredentialTTL,
	}
	if a := s.TCPAddr(); a != nil {
		c.TCPPort = a.Port
	}
	if a := s.TLSAddr(); a != nil {
		c.TLSPort = a.Port
	}
	return c
}

// ICEServers returns fresh RTCIceServer entries for user and when their
// credentials expire, as the signaling server's welcome carries them.
func (s *Server) ICEServers(user string) ([]proto.ICEServer, time.Time) {
	return s.ICEConfig().ICEServers(user, s.cfg.now())
}
