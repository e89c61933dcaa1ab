// Command print renders the rows kopsdr's benchmarks recorded (a
// KOPSDR_BENCH_RESULTS file) as one Markdown table: the last step of
// `make bench`.
package main

import (
	"fmt"
	"os"

	"github.com/kopsdr/kopsdr/test/benchtable"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: print RESULTS.jsonl")
		os.Exit(2)
	}
	f, err := os.Open(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer f.Close()
	rows, err := benchtable.Read(f)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	benchtable.Print(os.Stdout, rows)
}
