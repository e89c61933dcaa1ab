package fakeec2

import (
	"encoding/base64"
	"strconv"
	"strings"
)

// filter is one Filter.N: the resource matches if any of its values for
// name matches any of values (OR); a request's filters are AND'ed.
type filter struct {
	name   string
	values []string
}

// filterTable maps the filter names a Describe action accepts to the
// values a resource has for it. Tag filters (tag:K, tag-key, tag-value)
// come from the resource's tags and need no entry.
type filterTable[T any] map[string]func(T) []string

// filters reads Filter.N and refuses names the table does not know, as EC2
// does: a misspelt filter must fail loudly, not match everything.
func filters[T any](r *request, table filterTable[T]) ([]filter, error) {
	var out []filter
	for _, n := range indices(r.form, "Filter") {
		p := "Filter." + strconv.Itoa(n)
		f := filter{name: r.form.Get(p + ".Name"), values: list(r.form, p+".Value")}
		_, known := table[f.name]
		known = known || strings.HasPrefix(f.name, "tag:") || f.name == "tag-key" || f.name == "tag-value"
		if !known || f.name == "tag:" {
			return nil, errorf("InvalidParameterValue", "The filter '%s' is invalid", f.name)
		}
		out = append(out, f)
	}
	return out, nil
}

// matches reports whether a resource with these tags passes every filter.
func matches[T any](fs []filter, table filterTable[T], res T, tags map[string]string) bool {
	for _, f := range fs {
		if !anyMatch(f.values, filterValues(f.name, table, res, tags)) {
			return false
		}
	}
	return true
}

func filterValues[T any](name string, table filterTable[T], res T, tags map[string]string) []string {
	if key, ok := strings.CutPrefix(name, "tag:"); ok {
		if v, has := tags[key]; has {
			return []string{v}
		}
		return nil
	}
	switch name {
	case "tag-key":
		return sortedKeys(tags)
	case "tag-value":
		var vs []string
		for _, k := range sortedKeys(tags) {
			vs = append(vs, tags[k])
		}
		return vs
	}
	return table[name](res)
}

func anyMatch(patterns, values []string) bool {
	for _, p := range patterns {
		for _, v := range values {
			if glob(p, v) {
				return true
			}
		}
	}
	return false
}

// glob matches EC2 filter wildcards: * is any run of characters, ? is one
// character. Matching is case-sensitive, as in EC2.
func glob(pattern, s string) bool {
	p, v := []rune(pattern), []rune(s)
	pi, vi := 0, 0
	star, mark := -1, 0
	for vi < len(v) {
		switch {
		case pi < len(p) && (p[pi] == '?' || p[pi] == v[vi]):
			pi++
			vi++
		case pi < len(p) && p[pi] == '*':
			star, mark = pi, vi
			pi++
		case star >= 0:
			pi = star + 1
			mark++
			vi = mark
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}

func boolString(b bool) []string { return []string{strconv.FormatBool(b)} }

func int32String(n int32) []string { return []string{strconv.Itoa(int(n))} }

// page cuts a Describe answer to MaxResults. The NextToken names the
// creation sequence of the last item returned, so objects created or
// deleted between pages neither repeat nor shift the rest.
type page struct {
	max   int32 // 0 = everything
	after uint64
}

// readPage applies EC2's rules: MaxResults within [lo, hi] and never
// together with explicit ids.
func readPage(r *request, idsUsed bool, lo, hi int32) (page, error) {
	var p page
	n, has, err := r.int32("MaxResults")
	if err != nil {
		return p, err
	}
	if has {
		if idsUsed {
			return p, errorf("InvalidParameterCombination", "The parameter MaxResults cannot be used with explicit resource ids")
		}
		if n < lo || n > hi {
			return p, errorf("InvalidParameterValue", "Value ( %d ) for parameter maxResults is invalid. Expecting a value between %d and %d.", n, lo, hi)
		}
		p.max = n
	}
	if tok := r.get("NextToken"); tok != "" {
		raw, err := base64.RawURLEncoding.DecodeString(tok)
		seqText, ok := strings.CutPrefix(string(raw), "fakeec2:")
		after, perr := strconv.ParseUint(seqText, 10, 64)
		if err != nil || !ok || perr != nil {
			return p, errorf("InvalidParameterValue", "Invalid value '%s' for NextToken", tok)
		}
		p.after = after
	}
	return p, nil
}

// cut returns the items of one page and the token of the next ("" at the
// end). items must be in creation order; seq gives each one's sequence.
func cut[T any](p page, items []T, seq func(T) uint64) ([]T, string) {
	start := 0
	for start < len(items) && seq(items[start]) <= p.after {
		start++
	}
	items = items[start:]
	if p.max == 0 || len(items) <= int(p.max) {
		return items, ""
	}
	items = items[:p.max]
	last := seq(items[len(items)-1])
	return items, base64.RawURLEncoding.EncodeToString([]byte("fakeec2:" + strconv.FormatUint(last, 10)))
}
