//go:build !unix

package main

// lockStore does not lock where flock(2) is missing: processes that
// share a sign-in there may still spend its refresh token twice.
func lockStore(string) (func(), error) { return func() {}, nil }
