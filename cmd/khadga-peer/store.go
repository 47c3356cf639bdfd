package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// storeFile holds the tokens, readable by the user only.
const storeFile = "tokens.json"

type store struct {
	Server  string    `json:"server"`
	User    string    `json:"user"`
	Access  string    `json:"access_token"`
	Refresh string    `json:"refresh_token"`
	Expiry  time.Time `json:"expiry"`
}

func loadStore(dir string) (*store, error) {
	b, err := os.ReadFile(filepath.Join(dir, storeFile))
	if err != nil {
		return nil, err
	}
	var s store
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("read %s: %w", storeFile, err)
	}
	return &s, nil
}

// saveStore writes the tokens atomically with mode 0600 in a 0700 dir.
func saveStore(dir string, s *store) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("make config dir: %w", err)
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, storeFile+".*")
	if err != nil {
		return fmt.Errorf("save tokens: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("save tokens: %w", err)
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("save tokens: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save tokens: %w", err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, storeFile)); err != nil {
		return fmt.Errorf("save tokens: %w", err)
	}
	return nil
}
