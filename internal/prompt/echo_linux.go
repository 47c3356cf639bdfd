package prompt

import (
	"os"

	"golang.org/x/sys/unix"
)

// readHidden turns echo off before it shows label (so that nothing typed
// after the prompt appears can echo), reads one line, and restores the
// terminal.
func readHidden(f *os.File, out func(), _ func(int) ([]byte, error)) (string, error) {
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
	return ReadLine(f)
}
