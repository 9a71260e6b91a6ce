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
// times that size the writer copies the rest itself (afterCommit), which
// bounds the WAL.
type checkpointer struct {
	conn *rawConn
	log  *slog.Logger
	min  int // wal_autocheckpoint: the WAL's size, in pages, that wakes it
	// mu is held during a checkpoint: SQLite refuses a second concurrent
	// one (SQLITE_BUSY, without waiting).
	mu      sync.Mutex
	wake    chan struct{}
	stop    chan struct{}
	stopped chan struct{}
}

// walLimitFactor times wal_autocheckpoint is the WAL's size at which the
// writer checkpoints itself.
const walLimitFactor = 4

func startCheckpointer(conn *rawConn, min int, log *slog.Logger) *checkpointer {
	c := &checkpointer{conn: conn, log: log, min: min,
		wake: make(chan struct{}, 1), stop: make(chan struct{}), stopped: make(chan struct{})}
	go c.run()
	return c
}

// afterCommit starts or runs the checkpoint the WAL's size calls for,
// after a commit of writer. A nil checkpointer (wal_autocheckpoint 0)
// never checkpoints.
//
// During a bulk load (loading) there is none until the WAL reaches the
// writer's limit: the load's pages are written once, so copying them
// sooner saves no work, and it would compete with the load for the CPU and
// the disk. At the limit the checkpoint runs on the checkpointer's
// connection, at the configured synchronous, while the writer waits: the
// writer's own runs at synchronous=OFF during a load (load.go), and a
// checkpoint that copied pages of an unsynced WAL into the database could
// leave it corrupt after a power loss.
func (c *checkpointer) afterCommit(writer *rawConn, loading bool) {
	if c == nil {
		return
	}
	switch frames := writer.walFrames(); {
	case loading && frames >= walLimitFactor*c.min:
		if err := c.exclusive(c.conn.checkpoint); err != nil {
			c.log.Warn("sqlite checkpoint", "err", err, "wal_pages", frames)
		}
	case loading:
	case frames >= walLimitFactor*c.min:
		// The background checkpoints copy the WAL while the writer adds to
		// it, so they seldom copy all of it, and SQLite starts the WAL over
		// only once all of it is copied. The writer copies what is left,
		// after the checkpoint under way: its next batch then starts over.
		if err := c.exclusive(writer.checkpoint); err != nil {
			// The batch is committed; the next one tries again.
			c.log.Warn("sqlite checkpoint", "err", err, "wal_pages", frames)
		}
	case frames >= c.min:
		c.signal()
	}
}

// exclusive runs checkpoint with no other checkpoint of the store under way.
func (c *checkpointer) exclusive(checkpoint func() error) error {
	if c == nil {
		return checkpoint()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return checkpoint()
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
		if err := c.exclusive(c.conn.checkpoint); err != nil {
			// SQLITE_BUSY here is a checkpoint of another process that
			// opened the file; the next commit asks again.
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
