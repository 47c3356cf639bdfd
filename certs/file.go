package certs

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// MaxFileSize bounds each PEM file FileSource reads. A certificate chain is
// a few KiB; anything bigger is a wrong path, not a certificate.
const MaxFileSize = 1 << 20

// DefaultPoll is how often [FileSource.Run] looks at the files when it is
// given no interval. Certificates are renewed days before they expire, so a
// change seen within a minute is plenty.
const DefaultPoll = 30 * time.Second

// ErrFileTooLarge means a certificate or key file is over [MaxFileSize].
var ErrFileTooLarge = errors.New("certs: file too large")

// ErrExpired means the certificate's NotAfter is in the past. FileSource
// refuses such a certificate rather than serve one every client rejects.
var ErrExpired = errors.New("certs: certificate has expired")

// FileSource serves a certificate and key loaded from PEM files and swaps in
// a new pair when the files change. Its methods are safe for concurrent use.
type FileSource struct {
	certFile, keyFile string
	log               *slog.Logger
	now               func() time.Time // for the expiry check

	cert atomic.Pointer[tls.Certificate] // read on every handshake, no lock

	mu      sync.Mutex // serialises loads and guards the fields below
	seen    fileStamp  // the files' stat at the last read
	current [32]byte   // hash of the contents being served
	failed  [32]byte   // hash of the last contents that did not load
	lastErr string     // last read error the poll loop logged
}

// fileStamp is what the poll loop compares before reading the files.
type fileStamp struct {
	certMod, keyMod   time.Time
	certSize, keySize int64
}

// NewFileSource loads the key pair in certFile and keyFile (PEM; the
// certificate file may hold the chain after the leaf). It fails if the pair
// does not load, the key does not match, or the certificate has expired.
func NewFileSource(certFile, keyFile string, logger *slog.Logger) (*FileSource, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &FileSource{
		certFile: certFile,
		keyFile:  keyFile,
		log:      logger.With(slog.String("cert_file", certFile), slog.String("key_file", keyFile)),
		now:      time.Now,
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.loadLocked(true); err != nil {
		return nil, err
	}
	return s, nil
}

// GetCertificate returns the certificate being served, whatever the hello
// asks for. It has the signature of [tls.Config.GetCertificate].
func (s *FileSource) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return s.cert.Load(), nil
}

// Certificate returns the certificate being served; its Leaf is set.
func (s *FileSource) Certificate() *tls.Certificate { return s.cert.Load() }

// Reload reads both files now and serves the pair if it loads. If it does not
// (a half-written file, a key that does not match, an expired certificate),
// the certificate already being served stays, the error is logged and
// returned. The binary calls Reload on SIGHUP.
func (s *FileSource) Reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, err := s.loadLocked(true)
	if err != nil {
		s.log.Error("certificate reload failed; still serving the previous certificate", slog.Any("err", err))
	}
	return err
}

// Run polls the files every interval (DefaultPoll if interval <= 0) and
// reloads when their size or modification time changed and their contents
// differ from what is served. A bad pair is logged once per distinct content.
// Run blocks until ctx is done and then returns nil; it starts no goroutines.
func (s *FileSource) Run(ctx context.Context, interval time.Duration) error {
	if interval <= 0 {
		interval = DefaultPoll
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			s.poll()
		}
	}
}

// poll is one tick of Run: a stat of both files, and a load if they changed.
func (s *FileSource) poll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	stamp, err := statFiles(s.certFile, s.keyFile)
	if err == nil && stamp == s.seen {
		return
	}
	if err == nil {
		_, err = s.loadLocked(false)
	}
	if err == nil {
		s.lastErr = ""
		return
	}
	// A missing or unreadable file would otherwise be logged on every tick.
	if err.Error() != s.lastErr {
		s.lastErr = err.Error()
		s.log.Error("certificate reload failed; still serving the previous certificate", slog.Any("err", err))
	}
}

// loadLocked reads and parses both files and, if they hold a new valid pair,
// serves it. explicit loads (start-up, Reload) retry contents that failed
// before; the poll loop does not, so a broken file is logged once. The
// caller logs the error. It reports whether the served certificate changed.
// s.mu must be held.
func (s *FileSource) loadLocked(explicit bool) (bool, error) {
	stamp, certPEM, keyPEM, err := readFiles(s.certFile, s.keyFile)
	if err != nil {
		return false, err
	}
	s.seen = stamp
	sum := hashPair(certPEM, keyPEM)
	if sum == s.current {
		return false, nil
	}
	if sum == s.failed && !explicit {
		return false, nil
	}
	cert, err := s.parse(certPEM, keyPEM)
	if err != nil {
		s.failed = sum
		return false, err
	}
	s.current, s.failed = sum, [32]byte{}
	old := s.cert.Swap(cert)
	s.logLoaded(cert, old != nil)
	return true, nil
}

// parse turns the PEM pair into a certificate, refusing an expired one.
func (s *FileSource) parse(certPEM, keyPEM []byte) (*tls.Certificate, error) {
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("certs: load key pair: %w", err)
	}
	// X509KeyPair sets Leaf since Go 1.23.
	if now := s.now(); now.After(cert.Leaf.NotAfter) {
		return nil, fmt.Errorf("%w: not after %s", ErrExpired, cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return &cert, nil
}

// soonExpiry is when a loaded certificate earns a warning: a renewal that
// was due has not happened.
const soonExpiry = 7 * 24 * time.Hour

func (s *FileSource) logLoaded(cert *tls.Certificate, reload bool) {
	msg := "certificate loaded"
	if reload {
		msg = "certificate reloaded"
	}
	level := slog.LevelInfo
	if cert.Leaf.NotAfter.Sub(s.now()) < soonExpiry {
		level, msg = slog.LevelWarn, msg+"; it expires within a week"
	}
	fp := sha256.Sum256(cert.Leaf.Raw)
	s.log.Log(context.Background(), level, msg,
		slog.String("subject", cert.Leaf.Subject.CommonName),
		slog.Any("dns_names", cert.Leaf.DNSNames),
		slog.Time("not_after", cert.Leaf.NotAfter),
		slog.String("sha256", hex.EncodeToString(fp[:8])))
}

// statFiles returns the size and modification time of both files.
func statFiles(certFile, keyFile string) (fileStamp, error) {
	ci, err := os.Stat(certFile)
	if err != nil {
		return fileStamp{}, fmt.Errorf("certs: %w", err)
	}
	ki, err := os.Stat(keyFile)
	if err != nil {
		return fileStamp{}, fmt.Errorf("certs: %w", err)
	}
	return fileStamp{ci.ModTime(), ki.ModTime(), ci.Size(), ki.Size()}, nil
}

// readFiles reads both files with a size limit. The stamp comes from the
// open files, so it matches the bytes read.
func readFiles(certFile, keyFile string) (fileStamp, []byte, []byte, error) {
	certPEM, ci, err := readLimited(certFile)
	if err != nil {
		return fileStamp{}, nil, nil, err
	}
	keyPEM, ki, err := readLimited(keyFile)
	if err != nil {
		return fileStamp{}, nil, nil, err
	}
	return fileStamp{ci.ModTime(), ki.ModTime(), ci.Size(), ki.Size()}, certPEM, keyPEM, nil
}

func readLimited(name string) ([]byte, os.FileInfo, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, fmt.Errorf("certs: %w", err)
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, nil, fmt.Errorf("certs: read %s: %w", name, err)
	}
	if len(b) > MaxFileSize {
		return nil, nil, fmt.Errorf("%w: %s is over %d bytes", ErrFileTooLarge, name, MaxFileSize)
	}
	return b, fi, nil
}

// hashPair hashes both files with a length prefix, so moving bytes from one
// file to the other changes the hash.
func hashPair(certPEM, keyPEM []byte) [32]byte {
	h := sha256.New()
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(certPEM)))
	h.Write(n[:])
	h.Write(certPEM)
	h.Write(keyPEM)
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}
