package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/slipstreamkv/slipstream/sdk"
)

// TestTransactionStopsWithItsContext runs a statement that would take
// minutes inside a transaction whose context ends: the statement is
// interrupted, the transaction returns the context's error, nothing is
// committed, and the writer works on.
func TestTransactionStopsWithItsContext(t *testing.T) {
	s := New()
	bg := context.Background()
	if _, err := s.Open(bg, t.TempDir(), []byte("{}")); err != nil {
		t.Fatal(err)
	}
	defer s.Close(bg)
	ctx, cancel := context.WithCancel(bg)
	time.AfterFunc(50*time.Millisecond, cancel)
	s.wmu.Lock()
	err := s.transaction(ctx, func(c *rawConn) error {
		if err := c.exec(`UPDATE state SET cursor = 99 WHERE id = 1`); err != nil {
			return err
		}
		_, err := c.run(`WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 10000000000)
			SELECT count(*) FROM n`)
		return err
	})
	s.wmu.Unlock()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("transaction = %v; want it interrupted", err)
	}
	var cursor int64
	if err := s.r.QueryRow(`SELECT cursor FROM state WHERE id = 1`).Scan(&cursor); err != nil || cursor != 0 {
		t.Fatalf("cursor %d (%v) after an interrupted transaction; want 0", cursor, err)
	}
	b := &sdk.Batch{Cursor: 1, Mutations: []sdk.Mutation{{Op: sdk.OpPut, Key: []byte("k"), Value: []byte("v"), Revision: 1}}}
	if err := s.Apply(bg, b); err != nil {
		t.Fatalf("Apply after an interrupted transaction: %v", err)
	}
}
