// Command pause is the testbed's pod sandbox: it holds the pod's namespaces and does nothing
// else until it is told to stop. Built locally because no outside registry can be reached.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		// Reap children re-parented to us, as the upstream pause does.
		chld := make(chan os.Signal, 16)
		signal.Notify(chld, syscall.SIGCHLD)
		for range chld {
			for {
				pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
				if pid <= 0 || err != nil {
					break
				}
			}
		}
	}()
	<-sig
}
