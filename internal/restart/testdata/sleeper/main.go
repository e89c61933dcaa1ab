// Command sleeper stands in for etcd-manager in the restart tests: it is
// static (so it runs in a FROM scratch image), writes a few recognisable
// lines to stdout and stderr so log tails can be checked, then sleeps until
// it is killed. With the argument "crash" it exits 1 at once instead, like
// a process that dies by itself.
package main

import (
	"fmt"
	"os"
	"strconv"
	"time"
)

func main() {
	lines := 5
	if len(os.Args) > 1 && os.Args[1] == "crash" {
		fmt.Println("sleeper crashing")
		os.Exit(1)
	}
	if len(os.Args) > 1 {
		if n, err := strconv.Atoi(os.Args[1]); err == nil {
			lines = n
		}
	}
	fmt.Printf("sleeper start pid=%d\n", os.Getpid())
	for i := 1; i <= lines; i++ {
		fmt.Printf("stdout line %d\n", i)
	}
	// The pause keeps Docker's separate stdout and stderr copiers from
	// logging the last two lines out of order.
	time.Sleep(200 * time.Millisecond)
	fmt.Fprintln(os.Stderr, "stderr last line")
	for {
		time.Sleep(time.Hour)
	}
}
