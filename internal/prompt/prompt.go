// Package prompt asks a person for a password or a short answer: with a
// visible prompt (and, for a password, without echo) when standard input is
// a terminal, and by reading one line when it is a pipe or a file, so that
// scripts can feed the answer.
//
// A line is read one byte at a time, never buffered past its newline:
// the next reader of the same standard input (a second command in a shell
// pipeline, or the chat loop after a login) still gets everything after it.
//
// At a terminal on Linux a prompt waits for its line with poll(2) beside
// its context, so that a program that catches SIGINT to cancel the
// context (khadga-peer) ends at Ctrl-C: Go restarts a read(2) that a
// signal interrupts, and a plain read waited for Enter, echo off.
package prompt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/term"
)

// MaxLine bounds a line read from a pipe: no password or code comes close.
const MaxLine = 4 << 10

// ErrNoInput: standard input ended before a line was read.
var ErrNoInput = errors.New("nothing on standard input")

// IsTerminal reports whether r is a terminal (a person typing).
func IsTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// Password reads a secret. On a terminal it writes label to out and reads
// without echo; otherwise it reads one line of in, silently. At a terminal
// on Linux, ctx ending (Ctrl-C caught by the program) ends the wait with
// ctx's error, the terminal restored.
func Password(ctx context.Context, in io.Reader, out io.Writer, label string) (string, error) {
	if !IsTerminal(in) {
		return ReadLine(in)
	}
	p, err := readHidden(ctx, in.(*os.File), func() { fmt.Fprint(out, label) }, term.ReadPassword)
	fmt.Fprintln(out) // the newline the person typed was not echoed
	if err != nil {
		return "", fmt.Errorf("read the password: %w", err)
	}
	return p, nil
}

// NewPassword reads a password that is being chosen: on a terminal it asks
// twice and fails if the two differ; otherwise it reads one line.
func NewPassword(ctx context.Context, in io.Reader, out io.Writer, label string) (string, error) {
	p, err := Password(ctx, in, out, label)
	if err != nil || !IsTerminal(in) {
		return p, err
	}
	again, err := Password(ctx, in, out, "again: ")
	if err != nil {
		return "", err
	}
	if again != p {
		return "", errors.New("the two passwords differ")
	}
	return p, nil
}

// Line reads an answer that may be seen (a one-time code): on a terminal
// after writing label to out, otherwise one line of in. ctx ends the wait
// at a terminal, as Password's.
func Line(ctx context.Context, in io.Reader, out io.Writer, label string) (string, error) {
	if IsTerminal(in) {
		fmt.Fprint(out, label)
		if err := waitLine(ctx, in.(*os.File)); err != nil {
			fmt.Fprintln(out)
			return "", err
		}
	}
	return ReadLine(in)
}

// ReadLine reads up to a newline (or the end of input, if something came
// before it) and returns the line without its line ending.
func ReadLine(in io.Reader) (string, error) {
	var line []byte
	b := make([]byte, 1)
	for {
		n, err := in.Read(b)
		if n == 1 {
			if b[0] == '\n' {
				break
			}
			if len(line) >= MaxLine {
				return "", fmt.Errorf("line on standard input is over %d bytes", MaxLine)
			}
			line = append(line, b[0])
			continue
		}
		if errors.Is(err, io.EOF) {
			if len(line) == 0 {
				return "", ErrNoInput
			}
			break
		}
		if err != nil {
			return "", fmt.Errorf("read standard input: %w", err)
		}
	}
	return string(bytes.TrimSuffix(line, []byte("\r"))), nil
}
