// pause: the process of a pod sandbox in the local cluster (scripts/kube-local.sh). It holds the
// pod's namespaces, reaps orphans and exits on SIGINT/SIGTERM. Built static by scripts/tools.sh
// (tool kube-images) and packed as the image ethwatch.local/pause:1.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sigs {
		if s == syscall.SIGCHLD {
			for {
				var ws syscall.WaitStatus
				if pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil); pid <= 0 || err != nil {
					break
				}
			}
			continue
		}
		os.Exit(0)
	}
}
