package testenv

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"testing"
)

// DockerProxy serves the Docker API of the engine on a unix socket at
// 127.0.0.1 and returns that address ("127.0.0.1:port"). Every request
// goes first to intercept, which answers it itself (returning true) or
// lets it through (returning false); it may also block first, to hold a
// call back. Streams (events, logs) are passed on as they come.
func DockerProxy(t testing.TB, socket string, intercept func(w http.ResponseWriter, req *http.Request) bool) string {
	t.Helper()
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) { pr.Out.URL.Scheme, pr.Out.URL.Host = "http", "docker" },
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", socket)
		}},
		FlushInterval: -1,
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if !intercept(w, req) {
			proxy.ServeHTTP(w, req)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}
