// Package benchtable collects the rows that kopsdr's benchmarks measure,
// from several test packages and processes, into the one table `make bench`
// prints.
//
// A benchmark calls Record for each figure. When KOPSDR_BENCH_RESULTS names
// a file (make bench sets it), the row is appended to it as one JSON line;
// otherwise it is printed, so `go test -bench` alone still shows it. Print
// (run by `go run ./test/benchtable/print FILE`) renders the collected rows
// as one Markdown table, grouped in the order they first appear.
package benchtable

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
)

// Env names the file rows are appended to.
const Env = "KOPSDR_BENCH_RESULTS"

// Row is one measured line. Every field is preformatted text, so each
// benchmark chooses its own units; empty cells print as "".
type Row struct {
	Group   string `json:"group"`             // e.g. "backup", "large databases", "fleet", "workers"
	What    string `json:"what"`              // e.g. "kopsdr backup", "bare snapshot stream"
	Size    string `json:"size,omitempty"`    // the database or fleet size, e.g. "256 MiB", "1000 clusters"
	Time    string `json:"time,omitempty"`    // e.g. "3.10 s"
	Ratio   string `json:"ratio,omitempty"`   // e.g. "1.05x bare, 0.30x sequential"
	Output  string `json:"output,omitempty"`  // e.g. "41 MiB (1.12x gzip -6)"
	PeakRSS string `json:"peakRss,omitempty"` // e.g. "52 MiB"
	Heap    string `json:"heap,omitempty"`    // live Go heap, e.g. "18 MiB"
	Note    string `json:"note,omitempty"`    // anything else, e.g. "39 history events per backup"
}

var mu sync.Mutex

// Record appends r to the results file, or prints it when there is none.
func Record(r Row) error {
	mu.Lock()
	defer mu.Unlock()
	line, err := json.Marshal(r)
	if err != nil {
		return err
	}
	path := os.Getenv(Env)
	if path == "" {
		fmt.Printf("bench: %s\n", line)
		return nil
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(append(line, '\n')); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Read parses a results file.
func Read(r io.Reader) ([]Row, error) {
	var rows []Row
	dec := json.NewDecoder(r)
	for dec.More() {
		var row Row
		if err := dec.Decode(&row); err != nil {
			return nil, err
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// Print writes rows as one Markdown table, groups in first-seen order.
func Print(w io.Writer, rows []Row) {
	var order []string
	byGroup := map[string][]Row{}
	for _, r := range rows {
		if _, ok := byGroup[r.Group]; !ok {
			order = append(order, r.Group)
		}
		byGroup[r.Group] = append(byGroup[r.Group], r)
	}
	head := []string{"group", "what", "size", "time", "ratio", "output", "peak RSS", "live heap", "note"}
	var cells [][]string
	for _, g := range order {
		for _, r := range byGroup[g] {
			cells = append(cells, []string{r.Group, r.What, r.Size, r.Time, r.Ratio, r.Output, r.PeakRSS, r.Heap, r.Note})
		}
	}
	width := make([]int, len(head))
	for i, h := range head {
		width[i] = len(h)
	}
	for _, c := range cells {
		for i, s := range c {
			width[i] = max(width[i], len(s))
		}
	}
	line := func(c []string) {
		parts := make([]string, len(c))
		for i, s := range c {
			parts[i] = s + strings.Repeat(" ", width[i]-len(s))
		}
		fmt.Fprintf(w, "| %s |\n", strings.Join(parts, " | "))
	}
	line(head)
	sep := make([]string, len(head))
	for i := range sep {
		sep[i] = strings.Repeat("-", width[i])
	}
	line(sep)
	for _, c := range cells {
		line(c)
	}
}
