package etcdmanager

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// etcd-manager stores its messages with protojson. These helpers write the
// byte layout docs/formats.md pins down and read with protojson's strictness:
// unknown or duplicate fields are errors, a field may be spelled by its JSON
// name or its proto name, integers may be numbers or strings, null means unset.

// jsonWriter builds `{"a": 1, "b": "x"}`: proto3 JSON without zero values,
// one line, ": " and ", " separators.
type jsonWriter struct {
	b bytes.Buffer
	n int
}

func (w *jsonWriter) sep(name string) {
	if w.n == 0 {
		w.b.WriteByte('{')
	} else {
		w.b.WriteString(", ")
	}
	w.n++
	w.b.WriteString(jsonString(name))
	w.b.WriteString(": ")
}

func (w *jsonWriter) str(name, v string) {
	if v == "" {
		return
	}
	w.sep(name)
	w.b.WriteString(jsonString(v))
}

// int64 fields are strings in proto3 JSON; int32 fields are numbers.
func (w *jsonWriter) int64(name string, v int64) {
	if v == 0 {
		return
	}
	w.sep(name)
	w.b.WriteString(`"` + strconv.FormatInt(v, 10) + `"`)
}

func (w *jsonWriter) int32(name string, v int32) {
	if v == 0 {
		return
	}
	w.sep(name)
	w.b.WriteString(strconv.FormatInt(int64(v), 10))
}

func (w *jsonWriter) raw(name string, v []byte) {
	w.sep(name)
	w.b.Write(v)
}

func (w *jsonWriter) bytes() []byte {
	if w.n == 0 {
		return []byte("{}")
	}
	w.b.WriteByte('}')
	return w.b.Bytes()
}

// jsonString quotes s without Go's HTML escaping, as protojson does.
func jsonString(s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	return strings.TrimSuffix(b.String(), "\n")
}

// field is one member of a message: its JSON and proto names and how to
// store a (non-null) value.
type field struct {
	json, proto string
	set         func(raw json.RawMessage) error
}

// decodeStrict reads one JSON object into fields, refusing anything
// protojson would refuse.
func decodeStrict(what string, data []byte, fields ...field) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("parsing %s: %w", what, err)
	}
	if tok != json.Delim('{') {
		return fmt.Errorf("parsing %s: not a JSON object", what)
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("parsing %s: %w", what, err)
		}
		name, _ := tok.(string)
		var f *field
		for i := range fields {
			if name == fields[i].json || name == fields[i].proto {
				f = &fields[i]
			}
		}
		if f == nil {
			return fmt.Errorf("parsing %s: unknown field %q (etcd-manager rejects unknown fields)", what, name)
		}
		if seen[f.json] {
			return fmt.Errorf("parsing %s: duplicate field %q", what, name)
		}
		seen[f.json] = true
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return fmt.Errorf("parsing %s: field %q: %w", what, name, err)
		}
		if string(raw) == "null" {
			continue
		}
		if err := f.set(raw); err != nil {
			return fmt.Errorf("parsing %s: field %q: %w", what, name, err)
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return fmt.Errorf("parsing %s: %w", what, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("parsing %s: data after the JSON object", what)
	}
	return nil
}

func setString(p *string) func(json.RawMessage) error {
	return func(raw json.RawMessage) error {
		if len(raw) == 0 || raw[0] != '"' {
			return errors.New("not a string")
		}
		return json.Unmarshal(raw, p)
	}
}

// parseInt accepts 42 and "42", as protojson does for every integer type.
func parseInt(raw json.RawMessage, bits int) (int64, error) {
	s := string(raw)
	if len(raw) > 0 && raw[0] == '"' {
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, err
		}
	}
	v, err := strconv.ParseInt(s, 10, bits)
	if err != nil {
		return 0, fmt.Errorf("not a %d-bit integer: %s", bits, raw)
	}
	return v, nil
}

func setInt64(p *int64) func(json.RawMessage) error {
	return func(raw json.RawMessage) (err error) {
		*p, err = parseInt(raw, 64)
		return err
	}
}

func setInt32(p *int32) func(json.RawMessage) error {
	return func(raw json.RawMessage) error {
		v, err := parseInt(raw, 32)
		*p = int32(v)
		return err
	}
}
