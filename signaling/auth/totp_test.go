package auth

import (
	"bytes"
	"image/png"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"
)

func TestTOTP(t *testing.T) {
	e, err := NewTOTP("khadga", "alice")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(e.URL, "otpauth://totp/khadga:alice?") || !strings.Contains(e.URL, "secret="+e.Secret) {
		t.Fatalf("url %q", e.URL)
	}
	if img, err := png.Decode(bytes.NewReader(e.QRPNG)); err != nil || img.Bounds().Dx() != 256 {
		t.Fatalf("QR code PNG: %v", err)
	}
	now := time.Unix(1_800_000_000, 0)
	code, _ := totp.GenerateCode(e.Secret, now)
	step, ok := CheckTOTP(e.Secret, code, 0, now)
	if !ok || step != now.Unix()/TOTPPeriod {
		t.Fatalf("valid code refused (step %d)", step)
	}
	if _, ok := CheckTOTP(e.Secret, code, step, now); ok {
		t.Fatal("replayed code accepted")
	}
	if _, ok := CheckTOTP(e.Secret, code, 0, now.Add(-2*TOTPPeriod*time.Second)); ok {
		t.Fatal("code from two steps ahead accepted")
	}
	if _, ok := CheckTOTP(e.Secret, code, 0, now.Add(TOTPPeriod*time.Second)); !ok {
		t.Fatal("code from the previous step refused (clock skew)")
	}
	for _, bad := range []string{"", "12345", "1234567", "abcdef"} {
		if _, ok := CheckTOTP(e.Secret, bad, 0, now); ok {
			t.Fatalf("code %q accepted", bad)
		}
	}
}

func TestRecoveryCodes(t *testing.T) {
	codes, hashes, err := NewRecoveryCodes(RecoveryCodes)
	if err != nil || len(codes) != 10 || len(hashes) != 10 {
		t.Fatalf("%d codes, %v", len(codes), err)
	}
	seen := map[string]bool{}
	for i, c := range codes {
		if seen[c] || len(c) != 17 {
			t.Fatalf("code %q repeated or malformed", c)
		}
		seen[c] = true
		if MatchRecovery(hashes, " "+strings.ToUpper(c)+" ") != i {
			t.Fatalf("code %d does not match its hash", i)
		}
	}
	if MatchRecovery(hashes, "aaaaaaaa-aaaaaaaa") != -1 {
		t.Fatal("unknown code matched")
	}
}
