package e2e

import (
	"bytes"
	"context"
	"debug/buildinfo"
	"encoding/json"
	"fmt"
	"go/build"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/kopsdr/kopsdr/test/stack"
)

// Helpers of TestREADMETemporalCLI: the README's `temporal workflow`
// commands as an operator pastes them, and the real temporal CLI that runs
// them.

// tcliVersion is the temporal CLI the project pins (Makefile TEMPORAL_CLI,
// .ci/run); the README's examples are tested with it.
const tcliVersion = "v1.5.1"

const tcliInstall = "GOTOOLCHAIN=local go install github.com/temporalio/cli/cmd/temporal@" + tcliVersion + " (or: make tools)"

// tcliBinary finds the temporal CLI on PATH (make puts .tools there) or in
// $(go env GOPATH)/bin (where a developer may have it). Unlike the optional
// servers it is never skipped: without it the README's examples would go
// untested without anyone noticing.
func tcliBinary(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("temporal")
	if err != nil {
		p = ""
		for _, dir := range filepath.SplitList(build.Default.GOPATH) {
			cand := filepath.Join(dir, "bin", "temporal")
			if st, err := os.Stat(cand); err == nil && !st.IsDir() {
				p = cand
				break
			}
		}
	}
	if p == "" {
		t.Fatalf("the temporal CLI is not on PATH nor in $(go env GOPATH)/bin; install it with: %s", tcliInstall)
	}
	// `temporal --version` says 0.0.0-DEV for a go-installed build; the
	// module version is in the binary's build info.
	if bi, err := buildinfo.ReadFile(p); err == nil {
		t.Logf("temporal CLI %s: %s %s (pinned: %s)", p, bi.Main.Path, bi.Main.Version, tcliVersion)
	}
	return p
}

// tcliCommand is one `temporal workflow ...` command of the README.
type tcliCommand struct {
	Line int      // README line it starts on
	Text string   // as written, continuation lines joined
	Args []string // its shell words after "temporal"
}

// tcliREADMECommands finds every `temporal workflow` command in README.md:
// the lines of sh code blocks, and the inline code spans of the prose (the
// approve example is one, wrapped over two lines).
func tcliREADMECommands(t *testing.T) []tcliCommand {
	t.Helper()
	raw, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(raw), "\n")
	var cmds []tcliCommand
	add := func(line int, text string) {
		words, err := tcliShellWords(text)
		if err != nil {
			t.Fatalf("README.md:%d: %v: %s", line, err, text)
		}
		if len(words) < 2 || words[0] != "temporal" {
			t.Fatalf("README.md:%d: not a temporal command: %s", line, text)
		}
		cmds = append(cmds, tcliCommand{Line: line, Text: text, Args: words[1:]})
	}
	// Prose keeps its line count, with the fenced blocks blanked out, so an
	// inline span's line number is right.
	prose := make([]string, len(lines))
	inFence, shFence := false, false
	for i := 0; i < len(lines); i++ {
		trim := strings.TrimSpace(lines[i])
		if strings.HasPrefix(trim, "```") {
			if !inFence {
				lang := strings.TrimPrefix(trim, "```")
				inFence, shFence = true, lang == "sh" || lang == "bash" || lang == "shell"
			} else {
				inFence = false
			}
			continue
		}
		if !inFence {
			prose[i] = lines[i]
			continue
		}
		if !shFence {
			continue
		}
		start, text := i, lines[i]
		for strings.HasSuffix(text, `\`) && i+1 < len(lines) {
			i++
			text = strings.TrimSuffix(text, `\`) + " " + strings.TrimSpace(lines[i])
		}
		if strings.HasPrefix(strings.TrimSpace(text), "temporal workflow ") {
			add(start+1, strings.TrimSpace(text))
		}
	}
	joined := strings.Join(prose, "\n")
	for _, m := range regexp.MustCompile("`(temporal workflow [^`]+)`").FindAllStringSubmatchIndex(joined, -1) {
		line := strings.Count(joined[:m[0]], "\n") + 1
		if !strings.Contains(joined[m[2]:m[3]], " --") {
			continue // a mention such as the heading's `temporal workflow start`, not an example
		}
		// A code span that wraps is one line in Markdown: the newline is a space.
		add(line, strings.ReplaceAll(joined[m[2]:m[3]], "\n", " "))
	}
	return cmds
}

// tcliShellWords splits a command line as sh would, for the part of sh the
// README's commands use: words, single and double quotes, backslash
// escapes and a trailing comment. Anything else (expansions, pipes,
// redirections, globs) is refused rather than passed on differently from
// how a shell would run it.
func tcliShellWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	end := func() {
		if inWord {
			words = append(words, cur.String())
			cur.Reset()
			inWord = false
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			end()
		case c == '#' && !inWord:
			end()
			return words, nil
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("unterminated ' at %d", i)
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '"':
			inWord = true
			for i++; i < len(s) && s[i] != '"'; i++ {
				switch {
				case s[i] == '\\' && i+1 < len(s) && strings.IndexByte("$`\"\\", s[i+1]) >= 0:
					i++
				case s[i] == '$' || s[i] == '`':
					return nil, fmt.Errorf("unsupported expansion %q in double quotes", s[i])
				}
				cur.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, fmt.Errorf(`unterminated "`)
			}
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			inWord = true
		case strings.IndexByte("$`|&;<>(){}*?[]~", c) >= 0:
			return nil, fmt.Errorf("unsupported shell syntax %q at %d", c, i)
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	end()
	return words, nil
}

// tcliFlag is the index in args of the value of --name, or -1.
func tcliFlag(args []string, name string) int {
	for i, a := range args {
		if a == "--"+name && i+1 < len(args) {
			return i + 1
		}
	}
	return -1
}

// tcliFlagValue is the value of --name, or "".
func tcliFlagValue(args []string, name string) string {
	if i := tcliFlag(args, name); i >= 0 {
		return args[i]
	}
	return ""
}

// tcliDecodeInput decodes a README --input, keeping numbers as written.
func tcliDecodeInput(t *testing.T, raw string) map[string]any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("README input %s: %v", raw, err)
	}
	return m
}

// tcliReplace sets an input key the README wrote to this test's value.
// Only keys already there are replaced, so the input keeps the README's
// shape: a fixture value never adds a field.
func tcliReplace(t *testing.T, m map[string]any, key string, v any) {
	t.Helper()
	if _, ok := m[key]; !ok {
		t.Fatalf("README input has no %q to replace: %v", key, m)
	}
	m[key] = v
}

// tcliObject is the JSON object under key.
func tcliObject(t *testing.T, m map[string]any, key string) map[string]any {
	t.Helper()
	o, ok := m[key].(map[string]any)
	if !ok {
		t.Fatalf("README input: %q is not an object: %v", key, m[key])
	}
	return o
}

// tcliRunner runs the temporal CLI against the test server.
type tcliRunner struct {
	bin  string
	tp   *stack.Temporal
	home string
}

// env is the test's environment without the operator's temporal settings:
// no TEMPORAL_* variables and a HOME and config folder of its own, so no
// profile, TLS or API key of the machine's user changes what runs.
func (r *tcliRunner) env() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TEMPORAL_") && !strings.HasPrefix(kv, "HOME=") && !strings.HasPrefix(kv, "XDG_CONFIG_HOME=") {
			env = append(env, kv)
		}
	}
	return append(env, "HOME="+r.home, "XDG_CONFIG_HOME="+filepath.Join(r.home, ".config"))
}

// run runs `temporal args...` pointed at the test server (--address and
// --namespace added at the end) and returns its standard output; a
// non-zero exit fails the test with both outputs.
func (r *tcliRunner) run(t *testing.T, ctx context.Context, args ...string) string {
	t.Helper()
	full := append(append([]string{}, args...), "--address", r.tp.Address, "--namespace", r.tp.Namespace)
	t.Logf("$ temporal %s", tcliQuote(full))
	cmd := exec.CommandContext(ctx, r.bin, full...)
	cmd.Env = r.env()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("temporal %s: %v\nstdout:\n%s\nstderr:\n%s", tcliQuote(full), err, stdout.String(), stderr.String())
	}
	t.Logf("%s", strings.TrimRight(stdout.String(), "\n"))
	return stdout.String()
}

// tcliQuote writes args back as one sh command line, for the log.
func tcliQuote(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if a != "" && strings.IndexFunc(a, func(r rune) bool {
			return !strings.ContainsRune("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:=@,", r)
		}) < 0 {
			out[i] = a
		} else {
			out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
	}
	return strings.Join(out, " ")
}
