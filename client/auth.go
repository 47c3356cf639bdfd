package client

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// maxAPIResponse caps the body the client reads from an HTTP API answer.
const maxAPIResponse = 64 << 10

// Credentials say how the client signs in. Set Username and Password to log
// in over /api/login, AccessToken (and, to keep it fresh, RefreshToken)
// for an earlier login's tokens, or see TokenCredentials for a token from
// `khadga token`.
type Credentials struct {
	Username string
	Password string
	// Code is the second factor (a TOTP or recovery code) of an account
	// that has two-factor authentication on. It is spent by the first
	// sign-in; reconnections use the refresh token.
	Code         string
	AccessToken  string
	RefreshToken string
}

// BotRefreshPrefix starts the bot refresh tokens that `khadga token
// --refresh` mints.
const BotRefreshPrefix = "kbt_"

// TokenCredentials are the credentials of a bot token from `khadga token`:
// a bot refresh token (BotRefreshPrefix) is RefreshToken, which the client
// trades for short access tokens and renews them with before they expire
// for as long as it lives (it does not rotate); anything else is an
// access token, used until it expires.
func TokenCredentials(token string) Credentials {
	if strings.HasPrefix(token, BotRefreshPrefix) {
		return Credentials{RefreshToken: token}
	}
	return Credentials{AccessToken: token}
}

// Tokens is what /api/login and /api/refresh return.
type Tokens struct {
	Access  string    `json:"access_token"`
	Refresh string    `json:"refresh_token"`
	Expiry  time.Time `json:"expiry"`
}

// APIError is an error answer from the server's HTTP API.
type APIError struct {
	Status  int
	Code    string
	Message string
	// RetryAfter is set when the server rate-limited the request (429).
	RetryAfter time.Duration
}

func (e *APIError) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("server answered %d", e.Status)
	}
	return fmt.Sprintf("server answered %d %s: %s", e.Status, e.Code, e.Message)
}

// Errors that an APIError matches with errors.Is.
var (
	// ErrUnauthorized: status 401, wrong credentials, or a refresh token
	// that is expired, revoked or reused.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrTOTPRequired: the password was right, and the account wants its
	// second factor; log in again with the code. It is also ErrUnauthorized.
	ErrTOTPRequired = errors.New("second factor required")
	// ErrTOTPInvalid: the second factor was wrong or already used.
	ErrTOTPInvalid = errors.New("second factor refused")
	// ErrEmailUnverified: the account's email address is not confirmed yet.
	ErrEmailUnverified = errors.New("email address not confirmed")
)

// Is makes errors.Is match an answer against the errors above.
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrUnauthorized:
		return e.Status == http.StatusUnauthorized
	case ErrTOTPRequired:
		return e.Code == "totp_required"
	case ErrTOTPInvalid:
		return e.Code == "totp_invalid"
	case ErrEmailUnverified:
		return e.Code == "email_unverified"
	}
	return false
}

type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	ExpiresIn    int    `json:"expires_in"`
	TokenType    string `json:"token_type"`
}

// Login signs in with a username and password, and code, the second factor
// (a TOTP or recovery code), for an account that has two-factor
// authentication on; pass "" otherwise. Without the code such an account's
// login fails with ErrTOTPRequired, which tells the caller to ask for it.
func Login(ctx context.Context, hc *http.Client, serverURL, username, password, code string) (Tokens, error) {
	body := map[string]string{"username": username, "password": password}
	if code != "" {
		body["code"] = code
	}
	return postTokens(ctx, hc, serverURL, "/api/login", body)
}

// Registration is the server's answer to Register.
type Registration struct {
	Username string `json:"username"`
	// EmailVerification is "sent" when the server mailed a link that must
	// be opened before the first login.
	EmailVerification string `json:"email_verification,omitempty"`
}

// Register creates an account. email is needed only on servers that check
// email addresses (they answer 400 without one); pass "" otherwise.
func Register(ctx context.Context, hc *http.Client, serverURL, username, password, email string) (Registration, error) {
	body := map[string]string{"username": username, "password": password}
	if email != "" {
		body["email"] = email
	}
	b, err := postJSON(ctx, hc, serverURL, "/api/register", body)
	if err != nil {
		return Registration{}, err
	}
	var r Registration
	if err := json.Unmarshal(b, &r); err != nil {
		return Registration{}, fmt.Errorf("decode /api/register answer: %w", err)
	}
	return r, nil
}

// Refresh trades a refresh token for fresh tokens. Refresh tokens rotate:
// the old one is spent, keep the new one.
func Refresh(ctx context.Context, hc *http.Client, serverURL, refreshToken string) (Tokens, error) {
	return postTokens(ctx, hc, serverURL, "/api/refresh", map[string]string{"refresh_token": refreshToken})
}

// Logout revokes a refresh token (and the session family it belongs to).
func Logout(ctx context.Context, hc *http.Client, serverURL, refreshToken string) error {
	_, err := postJSON(ctx, hc, serverURL, "/api/logout", map[string]string{"refresh_token": refreshToken})
	return err
}

func postTokens(ctx context.Context, hc *http.Client, serverURL, path string, body any) (Tokens, error) {
	b, err := postJSON(ctx, hc, serverURL, path, body)
	if err != nil {
		return Tokens{}, err
	}
	var tr tokenResponse
	if err := json.Unmarshal(b, &tr); err != nil {
		return Tokens{}, fmt.Errorf("decode %s answer: %w", path, err)
	}
	if tr.AccessToken == "" {
		return Tokens{}, fmt.Errorf("%s answer has no access token", path)
	}
	t := Tokens{Access: tr.AccessToken, Refresh: tr.RefreshToken}
	if tr.ExpiresIn > 0 {
		t.Expiry = time.Now().Add(time.Duration(tr.ExpiresIn) * time.Second)
	} else {
		t.Expiry = jwtExpiry(tr.AccessToken)
	}
	return t, nil
}

func postJSON(ctx context.Context, hc *http.Client, serverURL, path string, body any) ([]byte, error) {
	if hc == nil {
		hc = http.DefaultClient
	}
	u, err := apiURL(serverURL, path)
	if err != nil {
		return nil, err
	}
	jb, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("encode %s request: %w", path, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(jb))
	if err != nil {
		return nil, fmt.Errorf("build %s request: %w", path, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("post %s: %w", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAPIResponse))
	if err != nil {
		return nil, fmt.Errorf("read %s answer: %w", path, err)
	}
	if resp.StatusCode/100 != 2 {
		return nil, apiError(resp, b)
	}
	return b, nil
}

func apiError(resp *http.Response, body []byte) error {
	e := &APIError{Status: resp.StatusCode}
	var eb struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &eb) == nil {
		e.Code, e.Message = eb.Error.Code, eb.Error.Message
	}
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
		e.RetryAfter = time.Duration(s) * time.Second
	}
	return e
}

// apiURL joins the server's base URL (http or https) and an API path.
func apiURL(serverURL, path string) (string, error) {
	u, err := url.Parse(serverURL)
	if err != nil {
		return "", fmt.Errorf("server URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("server URL %q: scheme must be http or https", serverURL)
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + path
	u.RawQuery = ""
	return u.String(), nil
}

// wsURL turns the server's base URL into the /ws URL.
func wsURL(serverURL string, query url.Values) (string, error) {
	u, err := url.Parse(serverURL)
	if err != nil {
		return "", fmt.Errorf("server URL: %w", err)
	}
	switch u.Scheme {
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	default:
		return "", fmt.Errorf("server URL %q: scheme must be http or https", serverURL)
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + "/ws"
	u.RawQuery = query.Encode()
	return u.String(), nil
}

// jwtExpiry reads the exp claim of a JWT without checking its signature:
// the client only uses it to know when to refresh. It returns the zero time
// when the token is not a readable JWT.
func jwtExpiry(tok string) time.Time {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 || len(parts[1]) > 8<<10 {
		return time.Time{}
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return time.Time{}
	}
	var claims struct {
		Exp int64 `json:"exp"`
	}
	if json.Unmarshal(b, &claims) != nil || claims.Exp == 0 {
		return time.Time{}
	}
	return time.Unix(claims.Exp, 0)
}
