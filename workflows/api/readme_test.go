package api

import (
	"bytes"
	"encoding/json"
	"os"
	"regexp"
	"testing"
)

// TestREADMEInputs keeps the README's copy-paste examples true: every
// `--type T ... --input '<json>'` decodes into T's input with no unknown
// field, and passes the input's own validation.
func TestREADMEInputs(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	inputs := map[string]func() any{
		"ClusterBackup":      func() any { return &ClusterBackupInput{} },
		"EtcdBackup":         func() any { return &EtcdBackupInput{} },
		"EtcdManagerRestore": func() any { return &EtcdManagerRestoreInput{} },
		"VolumeSnapshot":     func() any { return &VolumeSnapshotInput{} },
		"VolumeRestore":      func() any { return &VolumeRestoreInput{} },
		"RestoreDrill":       func() any { return &RestoreDrillInput{} },
		"ChangeCapture":      func() any { return &ChangeCaptureInput{} },
		"MakeBackup":         func() any { return &MakeBackupInput{} },
	}
	re := regexp.MustCompile(`--type (\w+)[^\n]*\\\n\s*--input '([^']+)'`)
	seen := map[string]bool{}
	for _, m := range re.FindAllSubmatch(readme, -1) {
		typ, raw := string(m[1]), m[2]
		newIn, ok := inputs[typ]
		if !ok {
			t.Errorf("README starts unknown workflow type %s", typ)
			continue
		}
		in := newIn()
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(in); err != nil {
			t.Errorf("README input of %s: %v", typ, err)
			continue
		}
		seen[typ] = true
		if err := in.(interface{ Validate() error }).Validate(); err != nil {
			t.Errorf("README input of %s is refused: %v", typ, err)
		}
	}
	for _, typ := range []string{WorkflowClusterBackup, WorkflowEtcdManagerRestore, WorkflowVolumeSnapshot, WorkflowVolumeRestore, WorkflowRestoreDrill,
		WorkflowChangeCapture, WorkflowMakeBackup} {
		if !seen[typ] {
			t.Errorf("README has no temporal workflow start example for %s", typ)
		}
	}
	var a Approval
	dec := json.NewDecoder(bytes.NewReader([]byte(`{"by": "alice", "comment": "INC-42"}`)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&a); err != nil || a.By != "alice" {
		t.Errorf("approval payload: %v", err)
	}
}
