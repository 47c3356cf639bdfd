package signaling

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

// FuzzDecodeBody feeds arbitrary request bodies to the decoder every API
// endpoint uses: it must never panic, must answer every refusal with a JSON
// error of 4xx, and what it accepts must survive a round trip.
func FuzzDecodeBody(f *testing.F) {
	for _, s := range []string{
		`{"username":"alice","password":"correct horse","code":"123456"}`,
		`{"username":"alice"}`, `{}`, `[]`, `{"username":1}`, `{"a":1}`, "{\"username\":\"\xff\"}",
		`{"username":"alice","password":"x"} {}`, `{"refresh_token":"a.b"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		w := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodPost, "/api/login", bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		var req loginRequest
		if !decodeBody(w, r, &req) {
			if w.Code < 400 || w.Code > 499 {
				t.Fatalf("refusal with status %d", w.Code)
			}
			var e map[string]apiError
			if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e["error"].Code == "" {
				t.Fatalf("refusal body %q is not a JSON error", w.Body.Bytes())
			}
			return
		}
		again, _ := json.Marshal(req)
		var req2 loginRequest
		w2 := httptest.NewRecorder()
		r2 := httptest.NewRequest(http.MethodPost, "/api/login", bytes.NewReader(again))
		r2.Header.Set("Content-Type", "application/json; charset=utf-8")
		if !decodeBody(w2, r2, &req2) || req2 != req {
			t.Fatalf("round trip changed %+v into %+v", req, req2)
		}
	})
}
