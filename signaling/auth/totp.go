package auth

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"fmt"
	"image/png"
	"strings"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
)

// TOTP parameters: the common authenticator-app defaults of RFC 6238.
const (
	TOTPPeriod = 30 // seconds per time step
	TOTPSkew   = 1  // steps accepted before and after now, for clock drift
	// RecoveryCodes is how many one-time recovery codes an enrollment gets.
	RecoveryCodes = 10
)

// TOTPEnrollment is a new, not yet confirmed second factor.
type TOTPEnrollment struct {
	Secret string // base32
	URL    string // otpauth://totp/...
	QRPNG  []byte // the URL as a QR code, for the browser app to show
}

// NewTOTP generates a secret for account at issuer, with its otpauth URL
// and QR code.
func NewTOTP(issuer, account string) (TOTPEnrollment, error) {
	key, err := totp.Generate(totp.GenerateOpts{Issuer: issuer, AccountName: account, Period: TOTPPeriod, Digits: otp.DigitsSix})
	if err != nil {
		return TOTPEnrollment{}, fmt.Errorf("auth: totp: %w", err)
	}
	img, err := key.Image(256, 256)
	if err != nil {
		return TOTPEnrollment{}, fmt.Errorf("auth: totp qr: %w", err)
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		return TOTPEnrollment{}, fmt.Errorf("auth: totp qr: %w", err)
	}
	return TOTPEnrollment{Secret: key.Secret(), URL: key.URL(), QRPNG: b.Bytes()}, nil
}

// CheckTOTP reports whether code is valid for secret at now, within TOTPSkew
// steps, and newer than lastStep (the step of the last accepted code), so
// that each code works once. It returns the step it matched; the caller
// stores it as the new lastStep in the same transaction that accepts it.
func CheckTOTP(secret, code string, lastStep int64, now time.Time) (int64, bool) {
	if len(code) != 6 {
		return 0, false
	}
	step := now.Unix() / TOTPPeriod
	for s := step - TOTPSkew; s <= step+TOTPSkew; s++ {
		if s <= lastStep {
			continue
		}
		want, err := totp.GenerateCodeCustom(secret, time.Unix(s*TOTPPeriod, 0), totp.ValidateOpts{
			Period: TOTPPeriod, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1,
		})
		if err == nil && subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1 {
			return s, true
		}
	}
	return 0, false
}

// NewRecoveryCodes returns n one-time recovery codes (for the user, once)
// and their SHA-256 hashes (for the store). Each code carries 80 random bits,
// so a fast hash is enough.
func NewRecoveryCodes(n int) (codes []string, hashes [][]byte, err error) {
	for range n {
		b := make([]byte, 10)
		if _, err := rand.Read(b); err != nil {
			return nil, nil, err
		}
		c := strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b))
		c = c[:8] + "-" + c[8:]
		codes = append(codes, c)
		hashes = append(hashes, hashRecovery(c))
	}
	return codes, hashes, nil
}

func hashRecovery(code string) []byte {
	h := sha256.Sum256([]byte(strings.ToLower(strings.TrimSpace(code))))
	return h[:]
}

// MatchRecovery returns the index of code's hash in hashes, or -1.
func MatchRecovery(hashes [][]byte, code string) int {
	h := hashRecovery(code)
	for i, x := range hashes {
		if subtle.ConstantTimeCompare(x, h) == 1 {
			return i
		}
	}
	return -1
}
