package fakeec2

import (
	"bytes"
	"crypto/rand"
	"encoding/xml"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// This file is the EC2 Query wire format: reading the form the SDK's
// serializers write, and writing the XML its deserializers read.

// namespace is the xmlns of every successful EC2 answer.
const namespace = "http://ec2.amazonaws.com/doc/" + apiVersion + "/"

// timeFormat is how EC2 writes timestamps (ISO 8601, milliseconds, UTC).
const timeFormat = "2006-01-02T15:04:05.000Z"

func formatTime(t time.Time) string { return t.UTC().Format(timeFormat) }

// request is one parsed call.
type request struct {
	form url.Values
	now  time.Time
	// replayed is set by CreateVolume when a ClientToken matched.
	replayed bool
}

func (r *request) get(name string) string { return r.form.Get(name) }

func (r *request) has(name string) bool {
	_, ok := r.form[name]
	return ok
}

func (r *request) bool(name string) bool { return r.form.Get(name) == "true" }

// required returns a parameter that must be present and non-empty.
func (r *request) required(name string) (string, error) {
	v := r.form.Get(name)
	if v == "" {
		return "", errorf("MissingParameter", "The request must contain the parameter %s", name)
	}
	return v, nil
}

// int32 returns an integer parameter and whether it was present.
func (r *request) int32(name string) (int32, bool, error) {
	if !r.has(name) {
		return 0, false, nil
	}
	n, err := strconv.ParseInt(r.get(name), 10, 32)
	if err != nil {
		return 0, false, errorf("InvalidParameterValue", "Value (%s) for parameter %s is invalid. Expected an integer.", r.get(name), name)
	}
	return int32(n), true, nil
}

// indices returns the sorted N of every "prefix.N" or "prefix.N.x" key.
// EC2 Query flattens every list this way (VolumeId.1, Filter.2.Value.1).
func indices(form url.Values, prefix string) []int {
	seen := map[int]bool{}
	for k := range form {
		rest, ok := strings.CutPrefix(k, prefix+".")
		if !ok {
			continue
		}
		head, _, _ := strings.Cut(rest, ".")
		if n, err := strconv.Atoi(head); err == nil && n > 0 {
			seen[n] = true
		}
	}
	out := make([]int, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// list returns the flattened string list prefix.1, prefix.2, ...
func list(form url.Values, prefix string) []string {
	var out []string
	for _, n := range indices(form, prefix) {
		if vs, ok := form[prefix+"."+strconv.Itoa(n)]; ok {
			out = append(out, vs[0])
		}
	}
	return out
}

func (r *request) list(prefix string) []string { return list(r.form, prefix) }

// tagParam is one Tag.N of CreateTags/DeleteTags/TagSpecification.
// hasValue separates an absent Value from an empty one, which DeleteTags
// treats differently.
type tagParam struct {
	key, value string
	hasValue   bool
}

func tagParams(form url.Values, prefix string) []tagParam {
	var out []tagParam
	for _, n := range indices(form, prefix) {
		p := prefix + "." + strconv.Itoa(n) + "."
		vs, hasValue := form[p+"Value"]
		t := tagParam{key: form.Get(p + "Key"), hasValue: hasValue}
		if hasValue {
			t.value = vs[0]
		}
		out = append(out, t)
	}
	return out
}

// tagSpecs reads TagSpecification.N for a Create action that accepts only
// resourceType, and returns the tags to put on the new resource.
func (r *request) tagSpecs(resourceType string) (map[string]string, error) {
	tags := map[string]string{}
	for _, n := range indices(r.form, "TagSpecification") {
		p := "TagSpecification." + strconv.Itoa(n)
		if rt := r.form.Get(p + ".ResourceType"); rt != resourceType {
			return nil, errorf("InvalidParameterValue", "'%s' is not a valid taggable resource type for this operation.", rt)
		}
		for _, t := range tagParams(r.form, p+".Tag") {
			if err := checkTagKey(t.key); err != nil {
				return nil, err
			}
			if _, dup := tags[t.key]; dup {
				return nil, errorf("InvalidParameterValue", "Duplicate tag key '%s' specified.", t.key)
			}
			tags[t.key] = t.value
		}
	}
	return tags, nil
}

func checkTagKey(key string) error {
	switch {
	case key == "":
		return errorf("InvalidParameterValue", "Tag key must not be empty")
	case strings.HasPrefix(key, "aws:"):
		return errorf("InvalidParameterValue", "Tag keys starting with 'aws:' are reserved for internal use")
	}
	return nil
}

// apiError is an EC2 error answer.
type apiError struct {
	Code    string
	Message string
	Status  int
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message }

func errorf(code, format string, args ...any) *apiError {
	return &apiError{Code: code, Message: fmt.Sprintf(format, args...), Status: statusFor(code)}
}

// asAPIError keeps EC2 errors and turns anything else (a bug in the fake)
// into an InternalError the test will see.
func asAPIError(err error) *apiError {
	if e, ok := err.(*apiError); ok {
		return e
	}
	return errorf("InternalError", "fakeec2: %v", err)
}

// statusFor is the HTTP status EC2 sends with an error code. The SDK's
// retryer keys on both: 5xx is retried whatever the code, and throttling
// codes are retried whatever the status.
func statusFor(code string) int {
	switch code {
	case "InternalError", "InternalFailure":
		return http.StatusInternalServerError
	case "RequestLimitExceeded", "Unavailable", "ServiceUnavailable":
		return http.StatusServiceUnavailable
	case "DryRunOperation":
		return http.StatusPreconditionFailed
	case "UnauthorizedOperation":
		return http.StatusForbidden
	case "AuthFailure":
		return http.StatusUnauthorized
	}
	return http.StatusBadRequest
}

// newRequestID returns a UUID, the form of EC2's request ids.
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// xmlErrorResponse is EC2's error document. Note RequestID, not requestId:
// the SDK's ec2query error parser reads exactly this shape.
type xmlErrorResponse struct {
	XMLName   xml.Name   `xml:"Response"`
	Errors    []xmlError `xml:"Errors>Error"`
	RequestID string     `xml:"RequestID"`
}

type xmlError struct {
	Code    string `xml:"Code"`
	Message string `xml:"Message"`
}

func writeError(w http.ResponseWriter, reqID string, e *apiError) {
	writeXML(w, e.Status, xmlErrorResponse{
		Errors:    []xmlError{{Code: e.Code, Message: e.Message}},
		RequestID: reqID,
	}, xml.StartElement{Name: xml.Name{Local: "Response"}})
}

// responder is implemented by every response body through respMeta.
type responder interface{ setRequestID(string) }

// respMeta is embedded first in every response body so requestId comes
// first, as in EC2's answers.
type respMeta struct {
	RequestID string `xml:"requestId"`
}

func (m *respMeta) setRequestID(id string) { m.RequestID = id }

// writeResult writes body as <ActionResponse xmlns="...">.
func writeResult(w http.ResponseWriter, reqID, action string, body any) {
	if r, ok := body.(responder); ok {
		r.setRequestID(reqID)
	}
	writeXML(w, http.StatusOK, body, xml.StartElement{
		Name: xml.Name{Local: action + "Response"},
		Attr: []xml.Attr{{Name: xml.Name{Local: "xmlns"}, Value: namespace}},
	})
}

func writeXML(w http.ResponseWriter, status int, body any, start xml.StartElement) {
	var buf bytes.Buffer
	buf.WriteString(xml.Header)
	if err := xml.NewEncoder(&buf).EncodeElement(body, start); err != nil {
		// Only a bug in the fake's own types can get here; say so loudly.
		http.Error(w, "fakeec2: encoding response: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// set renders an EC2 list: <fooSet><item>...</item></fooSet>, present
// even when empty as in EC2's answers.
type set[T any] struct {
	Items []T `xml:"item"`
}

type xmlTag struct {
	Key   string `xml:"key"`
	Value string `xml:"value"`
}

// tagSet renders tags sorted by key; nil (no element) when there are none,
// as EC2 omits tagSet on untagged resources.
func tagSet(tags map[string]string) *set[xmlTag] {
	if len(tags) == 0 {
		return nil
	}
	out := &set[xmlTag]{}
	for _, k := range sortedKeys(tags) {
		out.Items = append(out.Items, xmlTag{Key: k, Value: tags[k]})
	}
	return out
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// returnResponse is the answer of actions that only acknowledge.
type returnResponse struct {
	respMeta
	Return bool `xml:"return"`
}

func acknowledged() *returnResponse { return &returnResponse{Return: true} }
