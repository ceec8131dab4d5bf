package engine

import (
	"context"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// DefaultDebounce is how long a policy directory must stay quiet after a
// change before Watch reloads: editors and `git checkout` write several
// files in a burst.
const DefaultDebounce = 250 * time.Millisecond

// Watch watches dir and its subdirectories (hidden ones excluded) and calls
// reload once changes have settled for debounce (zero: DefaultDebounce). It
// runs until ctx ends; watcher errors go to onError. It returns an error
// only when the watch cannot be set up.
func Watch(ctx context.Context, dir string, debounce time.Duration, reload func(), onError func(error)) error {
	if debounce <= 0 {
		debounce = DefaultDebounce
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watching %s: %w", dir, err)
	}
	if err := addTree(w, dir); err != nil {
		_ = w.Close()
		return err
	}
	go func() {
		defer w.Close()
		timer := time.NewTimer(debounce)
		timer.Stop()
		for {
			select {
			case <-ctx.Done():
				timer.Stop()
				return
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				if ev.Has(fsnotify.Create) {
					_ = addTree(w, ev.Name) // a new subdirectory; a file is a no-op
				}
				timer.Reset(debounce)
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				if onError != nil {
					onError(err)
				}
			case <-timer.C:
				reload()
			}
		}
	}()
	return nil
}

// addTree watches root and the directories below it, hidden ones excluded.
func addTree(w *fsnotify.Watcher, root string) error {
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		if path != root && strings.HasPrefix(d.Name(), ".") {
			return filepath.SkipDir
		}
		if err := w.Add(path); err != nil {
			return fmt.Errorf("watching %s: %w", path, err)
		}
		return nil
	})
}
