//go:build !linux

package chromium

import (
	"errors"
	"os/exec"
)

// inNetns cannot work without Linux network namespaces: the command
// fails to start with a clear error.
func inNetns(string) func(*exec.Cmd) {
	return func(cmd *exec.Cmd) {
		cmd.Err = errors.New("chromium: network namespaces need Linux")
	}
}
