package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"github.com/khadga/khadga/signaling/auth"
	"github.com/khadga/khadga/signaling/store"
)

// maxRequest bounds an admin request body.
const maxRequest = 16 << 10

// Listen opens the admin socket at path with mode 0600, replacing a stale
// socket file left by a crashed server.
func Listen(path string) (net.Listener, error) {
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return nil, fmt.Errorf("admin: %s is in use by a running server", path)
	}
	os.Remove(path)
	ln, err := listenPrivate(path)
	if err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	return ln, nil
}

// listenPrivate binds the socket in a new directory that only this user
// may enter, makes it 0600 there, and moves it to path. Bound at path
// itself, it would take the process's umask until its chmod, and anyone
// who can reach path's directory could connect in between: the socket
// takes every admin command. Windows keeps the plain bind and chmod.
func listenPrivate(path string) (net.Listener, error) {
	if runtime.GOOS == "windows" {
		ln, err := net.Listen("unix", path)
		if err != nil {
			return nil, err
		}
		if err := os.Chmod(path, 0o600); err != nil {
			ln.Close()
			return nil, err
		}
		return ln, nil
	}
	dir, err := os.MkdirTemp(filepath.Dir(path), ".a") // a short name: socket paths are short
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	tmp := filepath.Join(dir, "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, err
	}
	ln.SetUnlinkOnClose(false) // the name it was bound to moves
	if err = os.Chmod(tmp, 0o600); err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		ln.Close()
		return nil, err
	}
	return &unlinking{UnixListener: ln, path: path}, nil
}

// unlinking removes the socket's file when it closes, as a listener bound
// at path would.
type unlinking struct {
	*net.UnixListener
	path string
	once sync.Once
}

func (u *unlinking) Close() error {
	err := u.UnixListener.Close()
	u.once.Do(func() { os.Remove(u.path) })
	return err
}

// Handler serves a as JSON over HTTP, for the admin socket.
func Handler(a Admin) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /users", func(w http.ResponseWriter, r *http.Request) {
		us, err := a.ListUsers(r.Context())
		reply(w, us, err)
	})
	mux.HandleFunc("POST /users", func(w http.ResponseWriter, r *http.Request) {
		var req struct{ Name, Password, Role string }
		if decode(w, r, &req) {
			reply(w, nil, a.AddUser(r.Context(), req.Name, req.Password, req.Role))
		}
	})
	mux.HandleFunc("DELETE /users/{name}", func(w http.ResponseWriter, r *http.Request) {
		reply(w, nil, a.DeleteUser(r.Context(), r.PathValue("name")))
	})
	mux.HandleFunc("POST /users/{name}/disabled", func(w http.ResponseWriter, r *http.Request) {
		var req struct{ Disabled bool }
		if decode(w, r, &req) {
			reply(w, nil, a.SetDisabled(r.Context(), r.PathValue("name"), req.Disabled))
		}
	})
	mux.HandleFunc("POST /users/{name}/role", func(w http.ResponseWriter, r *http.Request) {
		var req struct{ Role string }
		if decode(w, r, &req) {
			reply(w, nil, a.SetRole(r.Context(), r.PathValue("name"), req.Role))
		}
	})
	mux.HandleFunc("POST /users/{name}/reset-totp", func(w http.ResponseWriter, r *http.Request) {
		reply(w, nil, a.ResetTOTP(r.Context(), r.PathValue("name")))
	})
	mux.HandleFunc("POST /users/{name}/password", func(w http.ResponseWriter, r *http.Request) {
		var req struct{ Password string }
		if decode(w, r, &req) {
			reply(w, nil, a.SetPassword(r.Context(), r.PathValue("name"), req.Password))
		}
	})
	mux.HandleFunc("POST /tokens", func(w http.ResponseWriter, r *http.Request) {
		var req TokenRequest
		if decode(w, r, &req) {
			tok, err := a.MintToken(r.Context(), req)
			reply(w, tok, err)
		}
	})
	mux.HandleFunc("GET /tokens", func(w http.ResponseWriter, r *http.Request) {
		ts, err := a.ListTokens(r.Context())
		reply(w, ts, err)
	})
	mux.HandleFunc("POST /tokens/{id}/revoke", func(w http.ResponseWriter, r *http.Request) {
		reply(w, nil, a.RevokeToken(r.Context(), r.PathValue("id")))
	})
	mux.HandleFunc("GET /keys", func(w http.ResponseWriter, r *http.Request) {
		ks, err := a.ListKeys(r.Context())
		reply(w, ks, err)
	})
	mux.HandleFunc("POST /keys/rotate", func(w http.ResponseWriter, r *http.Request) {
		kid, err := a.RotateKey(r.Context())
		reply(w, map[string]string{"kid": kid}, err)
	})
	mux.HandleFunc("POST /keys/{kid}/retire", func(w http.ResponseWriter, r *http.Request) {
		reply(w, nil, a.RetireKey(r.Context(), r.PathValue("kid")))
	})
	mux.HandleFunc("GET /backup", func(w http.ResponseWriter, r *http.Request) {
		// Streamed, so that a store of any size costs no memory here. A
		// failure before the first byte is an error answer; after it, the
		// answer is cut short without its last chunk, which the client
		// reads as an error, never as a shorter file.
		bw := &backupWriter{w: w}
		if _, err := a.Backup(r.Context(), bw); err != nil {
			if !bw.started {
				reply(w, nil, err)
				return
			}
			panic(http.ErrAbortHandler)
		}
	})
	return mux
}

// backupWriter sends a backup as the answer's body, once its first bytes
// come.
type backupWriter struct {
	w       http.ResponseWriter
	started bool
}

func (b *backupWriter) Write(p []byte) (int, error) {
	if !b.started {
		b.started = true
		b.w.Header().Set("Content-Type", "application/octet-stream")
	}
	return b.w.Write(p)
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxRequest))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeErr(w, http.StatusBadRequest, "invalid request: "+err.Error())
		return false
	}
	return true
}

func reply(w http.ResponseWriter, v any, err error) {
	switch {
	case err == nil:
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(v)
	case errors.Is(err, ErrBadRequest), errors.Is(err, store.ErrInvalid):
		writeErr(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, store.ErrNotFound):
		writeErr(w, http.StatusNotFound, err.Error())
	case errors.Is(err, store.ErrUserExists):
		writeErr(w, http.StatusConflict, err.Error())
	default:
		writeErr(w, http.StatusInternalServerError, err.Error())
	}
}

func writeErr(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// Client is an Admin that talks to a running server's admin socket.
type Client struct {
	hc *http.Client
}

var _ Admin = (*Client)(nil)

// Dial connects to the admin socket at path. It fails at once when no
// server listens there, so the caller can fall back to opening the store.
func Dial(path string) (*Client, error) {
	c, err := net.Dial("unix", path)
	if err != nil {
		return nil, err
	}
	c.Close()
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}
	return &Client{hc: &http.Client{Transport: tr}}, nil
}

// call sends one request; out, if not nil, receives the JSON answer.
func (c *Client) call(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://admin"+path, body)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("admin socket: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return failure(resp)
	}
	if out == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// failure is the error of an answer that is not 200 OK, with the
// server's reason.
func failure(resp *http.Response) error {
	var e struct{ Error string }
	json.NewDecoder(io.LimitReader(resp.Body, maxRequest)).Decode(&e)
	// The server's message is the operation's own error, which names its
	// sentinel already: the refusal carries it as it is.
	if e.Error == "" {
		e.Error = "admin socket: " + resp.Status
	}
	switch resp.StatusCode {
	case http.StatusBadRequest:
		return refusal{ErrBadRequest, e.Error}
	case http.StatusNotFound:
		return refusal{store.ErrNotFound, e.Error}
	case http.StatusConflict:
		return refusal{store.ErrUserExists, e.Error}
	}
	return fmt.Errorf("admin socket: %s: %s", resp.Status, e.Error)
}

func (c *Client) ListUsers(ctx context.Context) ([]UserInfo, error) {
	var us []UserInfo
	err := c.call(ctx, http.MethodGet, "/users", nil, &us)
	return us, err
}

func (c *Client) AddUser(ctx context.Context, name, password, role string) error {
	return c.call(ctx, http.MethodPost, "/users", map[string]string{"name": name, "password": password, "role": role}, nil)
}

func (c *Client) DeleteUser(ctx context.Context, name string) error {
	return c.call(ctx, http.MethodDelete, "/users/"+url.PathEscape(name), nil, nil)
}

func (c *Client) SetDisabled(ctx context.Context, name string, disabled bool) error {
	return c.call(ctx, http.MethodPost, "/users/"+url.PathEscape(name)+"/disabled", map[string]bool{"disabled": disabled}, nil)
}

func (c *Client) SetRole(ctx context.Context, name, role string) error {
	return c.call(ctx, http.MethodPost, "/users/"+url.PathEscape(name)+"/role", map[string]string{"role": role}, nil)
}

func (c *Client) ResetTOTP(ctx context.Context, name string) error {
	return c.call(ctx, http.MethodPost, "/users/"+url.PathEscape(name)+"/reset-totp", nil, nil)
}

func (c *Client) MintToken(ctx context.Context, r TokenRequest) (Token, error) {
	var t Token
	err := c.call(ctx, http.MethodPost, "/tokens", r, &t)
	return t, err
}

func (c *Client) SetPassword(ctx context.Context, name, password string) error {
	return c.call(ctx, http.MethodPost, "/users/"+url.PathEscape(name)+"/password", map[string]string{"password": password}, nil)
}

func (c *Client) ListTokens(ctx context.Context) ([]TokenInfo, error) {
	var ts []TokenInfo
	err := c.call(ctx, http.MethodGet, "/tokens", nil, &ts)
	return ts, err
}

func (c *Client) RevokeToken(ctx context.Context, id string) error {
	return c.call(ctx, http.MethodPost, "/tokens/"+url.PathEscape(id)+"/revoke", nil, nil)
}

func (c *Client) ListKeys(ctx context.Context) ([]auth.KeyInfo, error) {
	var ks []auth.KeyInfo
	err := c.call(ctx, http.MethodGet, "/keys", nil, &ks)
	return ks, err
}

func (c *Client) RotateKey(ctx context.Context) (string, error) {
	var r struct{ Kid string }
	err := c.call(ctx, http.MethodPost, "/keys/rotate", nil, &r)
	return r.Kid, err
}

func (c *Client) RetireKey(ctx context.Context, kid string) error {
	return c.call(ctx, http.MethodPost, "/keys/"+url.PathEscape(kid)+"/retire", nil, nil)
}

func (c *Client) Backup(ctx context.Context, w io.Writer) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://admin/backup", nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("admin socket: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("backup: %w", failure(resp))
	}
	n, err := io.Copy(w, resp.Body)
	switch {
	case err != nil:
		err = fmt.Errorf("admin socket: the server stopped sending the backup after %d bytes: %w", n, err)
	case resp.ContentLength >= 0 && n != resp.ContentLength:
		err = fmt.Errorf("admin socket: backup truncated at %d of %d bytes", n, resp.ContentLength)
	}
	return n, err
}
