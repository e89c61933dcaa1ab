package fakeec2

import (
	"encoding/xml"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// post sends a raw EC2 Query request, as a client other than the SDK
// would, and returns the status and body.
func post(t *testing.T, s *Server, form url.Values) (int, string) {
	t.Helper()
	resp, err := http.PostForm(s.URL(), form)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body)
}

func TestWireFormatOfAnswers(t *testing.T) {
	s := Start(t)
	vol := s.AddVolume(Volume{})

	status, body := post(t, s, url.Values{"Action": {"DescribeVolumes"}, "Version": {"2016-11-15"}, "VolumeId.1": {vol}})
	assert.Equal(t, http.StatusOK, status)
	assert.True(t, strings.HasPrefix(body, `<?xml version="1.0" encoding="UTF-8"?>`), body)
	assert.Contains(t, body, `<DescribeVolumesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>`)
	assert.Contains(t, body, `<volumeSet><item><volumeId>`+vol+`</volumeId>`)

	status, body = post(t, s, url.Values{"Action": {"DescribeVolumes"}, "Version": {"2016-11-15"}, "VolumeId.1": {"vol-0123456789abcdef0"}})
	assert.Equal(t, http.StatusBadRequest, status)
	var doc struct {
		XMLName xml.Name `xml:"Response"`
		Code    string   `xml:"Errors>Error>Code"`
		Message string   `xml:"Errors>Error>Message"`
		ID      string   `xml:"RequestID"`
	}
	require.NoError(t, xml.Unmarshal([]byte(body), &doc), body)
	assert.Equal(t, "InvalidVolume.NotFound", doc.Code)
	assert.Equal(t, "The volume 'vol-0123456789abcdef0' does not exist.", doc.Message)
	assert.Regexp(t, `^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`, doc.ID)
}

func TestEnvelopeErrors(t *testing.T) {
	s := Start(t)
	for _, tc := range []struct {
		form url.Values
		code string
	}{
		{url.Values{"Version": {"2016-11-15"}}, "MissingAction"},
		{url.Values{"Action": {"RunInstances"}, "Version": {"2016-11-15"}}, "InvalidAction"},
		{url.Values{"Action": {"DescribeVolumes"}, "Version": {"2014-01-01"}}, "InvalidParameterValue"},
		// The SDK validates these before sending; other clients do not.
		{url.Values{"Action": {"StopInstances"}, "Version": {"2016-11-15"}}, "MissingParameter"},
		{url.Values{"Action": {"CreateTags"}, "Version": {"2016-11-15"}, "ResourceId.1": {"vol-0123456789abcdef0"}}, "MissingParameter"},
		{url.Values{"Action": {"DeleteVolume"}, "Version": {"2016-11-15"}}, "MissingParameter"},
	} {
		status, body := post(t, s, tc.form)
		assert.Equal(t, http.StatusBadRequest, status)
		assert.Contains(t, body, "<Code>"+tc.code+"</Code>")
	}
	resp, err := http.Get(s.URL() + "/?Action=DescribeVolumes&Version=2016-11-15")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
	assert.Len(t, s.Calls(), 6, "calls reaching an action are recorded, GET is refused before")
}
