package chromium

import (
	"os/exec"
	"syscall"
)

// inNetns rewrites the browser's command to `ip netns exec NS chromium
// ...`. ip execs the browser in place, so the process, the pipes (file
// descriptors 3 and 4) and the kill on the test's exit stay as chromedp
// set them up.
func inNetns(ns string) func(*exec.Cmd) {
	return func(cmd *exec.Cmd) {
		ip, err := exec.LookPath("ip")
		if err != nil {
			ip = "/usr/sbin/ip"
		}
		cmd.Args = append([]string{"ip", "netns", "exec", ns, cmd.Path}, cmd.Args[1:]...)
		cmd.Path = ip
		if cmd.SysProcAttr == nil {
			cmd.SysProcAttr = new(syscall.SysProcAttr)
		}
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL // as chromedp does on Linux
	}
}
