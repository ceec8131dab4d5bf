package engine

import (
	"context"
	"io/fs"
	"sync"
	"sync/atomic"
	"time"
)

// Slot holds the serving policy set of one directory. Reload builds a new
// set from the directory and swaps it in, atomically, only when it passes
// Verify (compile, contract, its own tests and golden cases); otherwise the
// old set keeps serving and the failure is kept for LastReload. A Slot is
// safe for concurrent use; reloads are serialized.
type Slot struct {
	fsys      fs.FS
	gate      SuiteOptions // how Verify runs the set's golden cases
	set       atomic.Pointer[PolicySet]
	reloading sync.Mutex
	last      atomic.Pointer[ReloadResult]
	onReload  func(ReloadResult)
}

// ReloadResult is the outcome of one reload.
type ReloadResult struct {
	At time.Time
	OK bool
	// Revision is the revision serving after the reload.
	Revision string
	// Err says why the new set was refused; nil when OK.
	Err error
}

// NewSlot loads fsys through Verify; scenario cases look tokens up through
// caseSource.
func NewSlot(ctx context.Context, fsys fs.FS, caseSource Source) (*Slot, error) {
	return newSlot(ctx, fsys, SuiteOptions{CaseSource: caseSource})
}

// newSlot is NewSlot with the gate's options (Config.NoStaging).
func newSlot(ctx context.Context, fsys fs.FS, opts SuiteOptions) (*Slot, error) {
	set, err := verify(ctx, fsys, opts)
	if err != nil {
		return nil, err
	}
	s := &Slot{fsys: fsys, gate: opts}
	s.set.Store(set)
	return s, nil
}

// Current returns the serving set.
func (s *Slot) Current() *PolicySet { return s.set.Load() }

// LastReload returns the outcome of the last reload, nil before the first.
func (s *Slot) LastReload() *ReloadResult { return s.last.Load() }

// Reload verifies the directory again and swaps the new set in if it
// passes. Decisions in flight finish on the set they started with.
func (s *Slot) Reload(ctx context.Context) ReloadResult {
	s.reloading.Lock()
	defer s.reloading.Unlock()
	set, err := verify(ctx, s.fsys, s.gate)
	r := ReloadResult{At: time.Now().UTC(), OK: err == nil, Err: err}
	if err == nil {
		s.set.Store(set)
	}
	r.Revision = s.set.Load().revision
	s.last.Store(&r)
	if s.onReload != nil {
		s.onReload(r)
	}
	return r
}
