package prompt

import (
	"context"
	"os"

	"golang.org/x/sys/unix"
)

// readHidden turns echo off before it shows label (so that nothing typed
// after the prompt appears can echo), reads one line, and restores the
// terminal.
func readHidden(ctx context.Context, f *os.File, out func(), _ func(int) ([]byte, error)) (string, error) {
	fd := int(f.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return "", err
	}
	quiet := *old
	quiet.Lflag &^= unix.ECHO
	quiet.Lflag |= unix.ICANON | unix.ISIG
	quiet.Iflag |= unix.ICRNL
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &quiet); err != nil {
		return "", err
	}
	defer unix.IoctlSetTermios(fd, unix.TCSETS, old)
	out()
	if err := waitLine(ctx, f); err != nil {
		return "", err
	}
	return ReadLine(f)
}

// waitLine waits until the terminal f has a line to read (in canonical
// mode the kernel reports it readable only then) or ctx ends. A program
// that catches SIGINT to cancel ctx would otherwise sit in read(2), which
// Go restarts after the signal: Ctrl-C at a prompt did nothing until
// Enter, with echo off.
func waitLine(ctx context.Context, f *os.File) error {
	if ctx.Done() == nil {
		return nil
	}
	var wake [2]int
	if err := unix.Pipe2(wake[:], unix.O_CLOEXEC); err != nil {
		return err
	}
	woken := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(woken)
		_, _ = unix.Write(wake[1], []byte{0})
	})
	defer func() {
		if !stop() {
			<-woken // the write is done: the pipe may close
		}
		unix.Close(wake[0])
		unix.Close(wake[1])
	}()
	fds := []unix.PollFd{{Fd: int32(f.Fd()), Events: unix.POLLIN}, {Fd: int32(wake[0]), Events: unix.POLLIN}}
	for {
		_, err := unix.Poll(fds, -1)
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return err
		case fds[1].Revents != 0:
			return ctx.Err()
		case fds[0].Revents != 0:
			return nil
		}
	}
}
