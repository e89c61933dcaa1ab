package sshdial

import (
	"crypto/ed25519"
	"errors"
	"io/fs"
	"net"
	"slices"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/kopsdr/kopsdr/internal/inputerr"
)

// hostKeys checks host keys against one known_hosts file.
type hostKeys struct {
	file    string
	check   ssh.HostKeyCallback // nil when the file does not exist
	missing bool
}

// loadHostKeys reads the known_hosts file. A missing file is not an error
// yet: the handshake goes on far enough to learn the host's key, so the
// *HostKeyError can show its fingerprint and the line to add.
func loadHostKeys(file string) (*hostKeys, error) {
	check, err := knownhosts.New(file)
	if errors.Is(err, fs.ErrNotExist) {
		return &hostKeys{file: file, missing: true}, nil
	}
	if err != nil {
		return nil, inputerr.Wrap(err, "ssh.knownHosts", file,
			"give a readable known_hosts file in OpenSSH format (ssh-keyscan output), or leave ssh.knownHosts empty for ~/.ssh/known_hosts")
	}
	return &hostKeys{file: file, check: check}, nil
}

// config returns the host key callback for one hop, and the host key
// algorithms to ask for.
//
// The algorithms matter: a master has several host keys (RSA, ECDSA,
// Ed25519) and presents one of the types the client asks for. If we asked
// for RSA while known_hosts pins the Ed25519 key, a good host would look
// like a changed one. So we ask for the types known_hosts has for this
// host, as OpenSSH does; for an unknown host we prefer Ed25519 (OpenSSH's
// default too), so the fingerprint in the error is the one an operator is
// likely to find.
func (h *hostKeys) config(w Where) (ssh.HostKeyCallback, []string) {
	addr := w.host()
	known := h.known(addr)
	algos := preferredAlgos
	if len(known) > 0 {
		algos = nil
		for _, k := range known {
			for _, a := range algosFor(k.Key.Type()) {
				if !slices.Contains(algos, a) {
					algos = append(algos, a)
				}
			}
		}
	}
	cb := func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		e := &HostKeyError{
			Where:       w,
			KnownHosts:  h.file,
			FileMissing: h.missing,
			KeyType:     key.Type(),
			Fingerprint: fingerprint(key),
			Line:        knownhosts.Line([]string{knownhosts.Normalize(addr)}, key),
		}
		if h.missing {
			return e
		}
		err := h.check(addr, remote, key)
		var keyErr *knownhosts.KeyError
		var revoked *knownhosts.RevokedError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &keyErr):
			e.Known = keyErr.Want
			return e
		case errors.As(err, &revoked):
			e.Revoked = true
			return e
		default:
			return err
		}
	}
	return cb, algos
}

// known are the keys known_hosts has for addr. knownhosts has no lookup,
// so we ask it to check a key no host has and read the expected ones off
// the mismatch.
func (h *hostKeys) known(addr string) []knownhosts.KnownKey {
	if h.missing {
		return nil
	}
	err := h.check(addr, &net.TCPAddr{IP: net.IPv4zero}, probeKey)
	var keyErr *knownhosts.KeyError
	if errors.As(err, &keyErr) {
		return keyErr.Want
	}
	return nil
}

// probeKey is a throwaway public key for hostKeys.known.
var probeKey = func() ssh.PublicKey {
	k, err := ssh.NewPublicKey(ed25519.PublicKey(make([]byte, ed25519.PublicKeySize)))
	if err != nil {
		panic(err)
	}
	return k
}()

// preferredAlgos is the host key preference for a host known_hosts does
// not know.
var preferredAlgos = []string{
	ssh.KeyAlgoED25519,
	ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521,
	ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256,
}

// algosFor maps a key type to the signature algorithms that prove it: an
// RSA key signs with SHA-2 (SHA-1 "ssh-rsa" is off in OpenSSH since 8.8).
func algosFor(keyType string) []string {
	if keyType == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256}
	}
	return []string{keyType}
}

func fingerprint(k ssh.PublicKey) string { return ssh.FingerprintSHA256(k) }
