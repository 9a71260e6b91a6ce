package store

import (
	"log/slog"
	"sync"
)

// checkpointer copies the WAL into the database on its own connection and
// goroutine, so that a commit seldom waits for a checkpoint: with SQLite's
// automatic checkpoint, the commit that crosses wal_autocheckpoint copies
// the WAL and syncs the database file before it returns. The writer wakes
// it after a commit that left the WAL at wal_autocheckpoint pages or more,
// and its PASSIVE checkpoints copy the WAL while the writer goes on. As the
// writer keeps adding to the WAL they seldom copy all of it, and SQLite
// starts the WAL over only after a checkpoint that did: at walLimitFactor
// times that size the writer copies the rest itself (writeBatch), which
// bounds the WAL.
type checkpointer struct {
	conn *rawConn
	log  *slog.Logger
	// mu is held during a checkpoint: SQLite refuses a second concurrent
	// one (SQLITE_BUSY, without waiting), so Compact takes it too.
	mu      *sync.Mutex
	wake    chan struct{}
	stop    chan struct{}
	stopped chan struct{}
}

func startCheckpointer(conn *rawConn, mu *sync.Mutex, log *slog.Logger) *checkpointer {
	c := &checkpointer{conn: conn, log: log, mu: mu,
		wake: make(chan struct{}, 1), stop: make(chan struct{}), stopped: make(chan struct{})}
	go c.run()
	return c
}

// signal asks for a checkpoint, without waiting: a request made while one
// is pending is the same request.
func (c *checkpointer) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *checkpointer) run() {
	defer close(c.stopped)
	for {
		select {
		case <-c.stop:
			return
		case <-c.wake:
		}
		c.mu.Lock()
		err := c.conn.checkpoint()
		c.mu.Unlock()
		if err != nil {
			// SQLITE_BUSY here is another connection's checkpoint (the
			// automatic one of the database/sql writer, after EndLoad);
			// the next commit asks again.
			c.log.Debug("sqlite background checkpoint", "err", err)
		}
	}
}

// close stops the goroutine and closes its connection.
func (c *checkpointer) close() error {
	close(c.stop)
	<-c.stopped
	return c.conn.close()
}
