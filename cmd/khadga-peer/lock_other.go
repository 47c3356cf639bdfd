//go:build !unix

package main

import "os"

// lockStore does not lock where flock(2) is missing: processes that
// share a sign-in there may still spend its refresh token twice.
func lockStore(string) (func(), error) { return func() {}, nil }

// holdPart does not lock where flock(2) is missing, and removeAbandoned
// then removes nothing: it could not tell a live transfer's file.
func holdPart(*os.File) error { return nil }

func removeAbandoned(string) bool { return false }
