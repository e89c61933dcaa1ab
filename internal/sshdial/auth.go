package sshdial

import (
	"errors"
	"fmt"
	"net"
	"os"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/kopsdr/kopsdr/internal/inputerr"
)

// auth is how we log in: one key file, or the keys in the SSH agent. It
// also remembers what it offered, for *AuthError.
type auth struct {
	method  ssh.AuthMethod
	keyFile string   // set when a key file is used
	agent   string   // the agent socket, when the agent is used
	keys    []string // "TYPE SHA256:..." of each key offered
	close   func()   // releases the agent connection; auth is over once Dial returns
}

func loadAuth(keyFile string) (*auth, error) {
	if keyFile != "" {
		return keyFileAuth(keyFile)
	}
	return agentAuth()
}

func keyFileAuth(file string) (*auth, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, inputerr.Wrap(err, "ssh.keyFile", file,
			"give a private key file the worker can read, or leave ssh.keyFile empty to use the ssh-agent at $SSH_AUTH_SOCK")
	}
	signer, err := ssh.ParsePrivateKey(pem)
	var missing *ssh.PassphraseMissingError
	switch {
	case errors.As(err, &missing):
		// A worker cannot prompt; an agent holds the decrypted key.
		return nil, inputerr.New("ssh.keyFile", file,
			"the key is protected by a passphrase, which kopsdr cannot ask for: load it into the worker's ssh-agent (ssh-add "+file+"), run the worker with SSH_AUTH_SOCK set and leave ssh.keyFile empty")
	case err != nil:
		if _, _, _, _, perr := ssh.ParseAuthorizedKey(pem); perr == nil {
			return nil, inputerr.New("ssh.keyFile", file, "this is a public key; give the private key file (usually the same name without .pub)")
		}
		return nil, inputerr.Wrap(err, "ssh.keyFile", file, "give an SSH private key file (OpenSSH or PEM format)")
	}
	return &auth{
		method:  ssh.PublicKeys(signer),
		keyFile: file,
		keys:    []string{describeKey(signer.PublicKey())},
		close:   func() {},
	}, nil
}

func agentAuth() (*auth, error) {
	sock := os.Getenv("SSH_AUTH_SOCK")
	if sock == "" {
		return nil, inputerr.New("ssh.keyFile", "",
			"set ssh.keyFile to a private key file on the worker, or run the worker with an ssh-agent (SSH_AUTH_SOCK) holding the cluster's SSH key")
	}
	conn, err := net.Dial("unix", sock)
	if err != nil {
		return nil, inputerr.Wrap(err, "ssh.keyFile", "",
			fmt.Sprintf("the ssh-agent at SSH_AUTH_SOCK=%s does not answer: start it and load the key (ssh-add), or set ssh.keyFile", sock))
	}
	ag := agent.NewClient(conn)
	keys, err := ag.List()
	if err != nil {
		_ = conn.Close()
		return nil, inputerr.Wrap(err, "ssh.keyFile", "",
			fmt.Sprintf("the ssh-agent at SSH_AUTH_SOCK=%s cannot list its keys: restart it, or set ssh.keyFile", sock))
	}
	a := &auth{
		method: ssh.PublicKeysCallback(ag.Signers),
		agent:  sock,
		close:  func() { _ = conn.Close() },
	}
	for _, k := range keys {
		a.keys = append(a.keys, describeKey(k))
	}
	return a, nil
}

func describeKey(k ssh.PublicKey) string { return k.Type() + " " + fingerprint(k) }
