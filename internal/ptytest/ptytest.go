//go:build linux

// Package ptytest opens pseudo-terminals for tests of programs that behave
// differently when a person types at a terminal (password prompts without
// echo). The test keeps the controller side and hands the terminal side to
// the process under test as its standard input and output.
package ptytest

import (
	"fmt"
	"os"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// Open returns a new pseudo-terminal pair: ctl is the test's end (what it
// writes is typed, what it reads is displayed), tty the program's end.
// Failing to open one fails the test rather than skipping it: every Linux
// the tests run on has pseudo-terminals, and a test that skips there would
// hide the prompts it checks.
func Open(t testing.TB) (ctl, tty *os.File) {
	t.Helper()
	ctl, tty, err := open()
	if err != nil {
		t.Fatal(err)
	}
	return ctl, tty
}

func open() (ctl, tty *os.File, err error) {
	ctl, err = os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("ptytest: %w", err)
	}
	fd := int(ctl.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		ctl.Close()
		return nil, nil, fmt.Errorf("ptytest: unlock: %w", err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		ctl.Close()
		return nil, nil, fmt.Errorf("ptytest: number: %w", err)
	}
	tty, err = os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		ctl.Close()
		return nil, nil, fmt.Errorf("ptytest: %w", err)
	}
	return ctl, tty, nil
}
