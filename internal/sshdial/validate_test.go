package sshdial_test

import (
	"testing"

	"github.com/kopsdr/kopsdr/internal/inputerr"
	"github.com/kopsdr/kopsdr/internal/sshdial"
)

func TestValidate(t *testing.T) {
	ok := []sshdial.Config{
		{Address: "10.0.1.10"},
		{Address: "10.0.1.10:2222", User: "ubuntu"},
		{Address: "ip-10-0-1-10.ec2.internal"},
		{Address: "master-1.example.com:22", Jump: "bastion.example.com"},
		{Address: "10.0.1.10", Jump: "admin@bastion.example.com:2222"},
		{Address: "fd00::10"},
		{Address: "[fd00::10]:22", Jump: "[fd00::1]"},
		{Address: "10.0.1.10", KeyFile: "/etc/kopsdr/id_ed25519", KnownHosts: "/etc/kopsdr/known_hosts"},
	}
	for _, c := range ok {
		if err := c.Validate(); err != nil {
			t.Errorf("%+v: %v", c, err)
		}
	}

	bad := []struct {
		c     sshdial.Config
		field string
	}{
		{sshdial.Config{}, "ssh.address"},
		{sshdial.Config{Address: "ubuntu@10.0.1.10"}, "ssh.address"},
		{sshdial.Config{Address: "10.0.1.10:0"}, "ssh.address"},
		{sshdial.Config{Address: "10.0.1.10:65536"}, "ssh.address"},
		{sshdial.Config{Address: "10.0.1.10:ssh"}, "ssh.address"},
		{sshdial.Config{Address: "-oProxyCommand=x"}, "ssh.address"},
		{sshdial.Config{Address: "master..example.com"}, "ssh.address"},
		{sshdial.Config{Address: "host name"}, "ssh.address"},
		{sshdial.Config{Address: "fd00::zz"}, "ssh.address"},
		{sshdial.Config{Address: "10.0.1.10", User: "bad user"}, "ssh.user"},
		{sshdial.Config{Address: "10.0.1.10", User: "-l"}, "ssh.user"},
		{sshdial.Config{Address: "10.0.1.10", Jump: "@bastion"}, "ssh.jump"},
		{sshdial.Config{Address: "10.0.1.10", Jump: "bastion:99999"}, "ssh.jump"},
		{sshdial.Config{Address: "10.0.1.10", Jump: "a b@bastion"}, "ssh.jump"},
		{sshdial.Config{Address: "10.0.1.10", KeyFile: "~/.ssh/id_rsa"}, "ssh.keyFile"},
		{sshdial.Config{Address: "10.0.1.10", KnownHosts: "~/.ssh/known_hosts"}, "ssh.knownHosts"},
	}
	for _, b := range bad {
		err := b.c.Validate()
		e, ok := inputerr.As(err)
		if !ok || e.Field != b.field {
			t.Errorf("%+v: got %v; want an input error on %s", b.c, err, b.field)
			continue
		}
		t.Logf("%v", err)
	}
}
