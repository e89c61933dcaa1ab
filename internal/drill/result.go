package drill

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/kopsdr/kopsdr/internal/backupstore"
	"github.com/kopsdr/kopsdr/internal/etcdmanager"
)

// ResultFile is the drill's record inside the backup folder. etcd-manager
// ignores objects it does not know there, and pruning the backup removes it
// with the rest of the folder.
const ResultFile = "kopsdr-drill.json"

// WriteResult stores r as <backup>/kopsdr-drill.json, replacing an older
// drill's result.
func WriteResult(ctx context.Context, store backupstore.Store, backup string, r Result) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	_, err = store.Put(ctx, backup+"/"+ResultFile, bytes.NewReader(data), backupstore.PutOptions{ContentType: "application/json"})
	return err
}

// ReadResult reads the last drill's result of backup; ok is false when the
// backup was never drilled.
func ReadResult(ctx context.Context, store backupstore.Store, backup string) (Result, bool, error) {
	data, err := etcdmanager.ReadSmall(ctx, store, backup+"/"+ResultFile)
	if errors.Is(err, backupstore.ErrNotFound) {
		return Result{}, false, nil
	}
	if err != nil {
		return Result{}, false, err
	}
	var r Result
	if err := json.Unmarshal(data, &r); err != nil {
		return Result{}, false, fmt.Errorf("%s/%s/%s: %w", store.URL(), backup, ResultFile, err)
	}
	return r, true, nil
}
