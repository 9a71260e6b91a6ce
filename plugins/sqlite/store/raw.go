package store

/*
#include <stdlib.h>
#include <string.h>

// The SQLite C API, as linked from github.com/mattn/go-sqlite3's copy of
// the amalgamation (this package imports it): declared here rather than
// included, because that header is not on this package's include path.
typedef struct sqlite3 sqlite3;
typedef struct sqlite3_stmt sqlite3_stmt;
int sqlite3_open_v2(const char *filename, sqlite3 **db, int flags, const char *vfs);
int sqlite3_close_v2(sqlite3 *db);
int sqlite3_exec(sqlite3 *db, const char *sql, void *callback, void *arg, char **errmsg);
int sqlite3_prepare_v2(sqlite3 *db, const char *sql, int n, sqlite3_stmt **stmt, const char **tail);
int sqlite3_finalize(sqlite3_stmt *stmt);
int sqlite3_bind_blob(sqlite3_stmt *stmt, int i, const void *p, int n, void (*destructor)(void *));
int sqlite3_bind_int64(sqlite3_stmt *stmt, int i, long long v);
int sqlite3_bind_text(sqlite3_stmt *stmt, int i, const char *p, int n, void (*destructor)(void *));
int sqlite3_step(sqlite3_stmt *stmt);
int sqlite3_reset(sqlite3_stmt *stmt);
int sqlite3_clear_bindings(sqlite3_stmt *stmt);
long long sqlite3_column_int64(sqlite3_stmt *stmt, int i);
const void *sqlite3_column_blob(sqlite3_stmt *stmt, int i);
int sqlite3_column_bytes(sqlite3_stmt *stmt, int i);
const char *sqlite3_errmsg(sqlite3 *db);
int sqlite3_extended_errcode(sqlite3 *db);
void sqlite3_interrupt(sqlite3 *db);
int sqlite3_busy_timeout(sqlite3 *db, int ms);
void *sqlite3_wal_hook(sqlite3 *db, int (*hook)(void *, sqlite3 *, const char *, int), void *arg);
int sqlite3_wal_checkpoint_v2(sqlite3 *db, const char *schema, int mode, int *log, int *checkpointed);
int sqlite3_get_autocommit(sqlite3 *db);
int sqlite3_db_status(sqlite3 *db, int op, int *cur, int *hiwtr, int reset);

#define SLIP_DBSTATUS_CACHE_WRITE 9

// slip_pages_written is how many pages db has written to the WAL (or the
// database) since it opened.
static int slip_pages_written(sqlite3 *db) {
	int cur = 0, hi = 0;
	sqlite3_db_status(db, SLIP_DBSTATUS_CACHE_WRITE, &cur, &hi, 0);
	return cur;
}

#define SLIP_ROW 100
#define SLIP_DONE 101

// slip_insert steps stmt (key, value, revision) once per row: row i's key
// and value follow each other in data, klen[i] and vlen[i] bytes long. It
// returns SLIP_DONE, or the first error. The bindings are cleared before
// it returns: SQLite does not keep the caller's memory.
static int slip_insert(sqlite3_stmt *stmt, int n, const int *klen, const int *vlen,
		const long long *rev, const char *data) {
	static const char empty = 0;
	int rc = SLIP_DONE;
	for (int i = 0; i < n && rc == SLIP_DONE; i++) {
		sqlite3_bind_blob(stmt, 1, data, klen[i], 0);
		data += klen[i];
		// A zero-length value is bound as an empty BLOB, not NULL.
		sqlite3_bind_blob(stmt, 2, vlen[i] ? data : &empty, vlen[i], 0);
		data += vlen[i];
		sqlite3_bind_int64(stmt, 3, rev[i]);
		rc = sqlite3_step(stmt);
		sqlite3_reset(stmt);
	}
	sqlite3_clear_bindings(stmt);
	return rc;
}

// slip_apply writes n mutations to kv, each a put (put[i] != 0) or a
// delete of key i, laid out in data as slip_insert's rows (a delete has no
// value). find (key) returns a key's row id and its size, update (value,
// revision, id) and del (id) change that row, insert adds a new one. It
// adds the rows and bytes the keys held before to old[0] and old[1], and
// returns SLIP_DONE or the first error.
static int slip_apply(sqlite3_stmt *find, sqlite3_stmt *insert, sqlite3_stmt *update, sqlite3_stmt *del,
		int n, const unsigned char *put, const int *klen, const int *vlen, const long long *rev,
		const char *data, long long *old) {
	static const char empty = 0;
	int rc = SLIP_DONE;
	for (int i = 0; i < n && rc == SLIP_DONE; i++) {
		const char *key = data, *value = vlen[i] ? data + klen[i] : &empty;
		data += klen[i] + vlen[i];
		sqlite3_bind_blob(find, 1, key, klen[i], 0);
		long long id = 0;
		int found = 0;
		rc = sqlite3_step(find);
		if (rc == SLIP_ROW) {
			found = 1;
			id = sqlite3_column_int64(find, 0);
			old[0]++;
			old[1] += sqlite3_column_int64(find, 1);
			rc = SLIP_DONE;
		}
		sqlite3_reset(find);
		if (rc != SLIP_DONE) {
			break;
		}
		sqlite3_stmt *st = 0;
		if (put[i] && found) {
			st = update;
			sqlite3_bind_blob(st, 1, value, vlen[i], 0);
			sqlite3_bind_int64(st, 2, rev[i]);
			sqlite3_bind_int64(st, 3, id);
		} else if (put[i]) {
			st = insert;
			sqlite3_bind_blob(st, 1, key, klen[i], 0);
			sqlite3_bind_blob(st, 2, value, vlen[i], 0);
			sqlite3_bind_int64(st, 3, rev[i]);
		} else if (found) {
			st = del;
			sqlite3_bind_int64(st, 1, id);
		}
		if (st) {
			rc = sqlite3_step(st);
			sqlite3_reset(st);
		}
	}
	sqlite3_clear_bindings(find);
	sqlite3_clear_bindings(insert);
	sqlite3_clear_bindings(update);
	sqlite3_clear_bindings(del);
	return rc;
}

// slip_scan copies rows of stmt, a scan whose columns are key, value and
// revision (key and revision when keys_only), into the caller's arrays:
// row i's key and value follow each other in buf, klen[i] and vlen[i]
// bytes long. It steps stmt first unless a row is current already (held,
// left by the call before), and stops when the statement is done, when max
// rows are copied or when the current row does not fit in the cap bytes of
// buf: then it returns SLIP_ROW with that row current, and *need its size.
// Otherwise it returns SLIP_DONE or the first error. *n is the number of
// rows copied.
static int slip_scan(sqlite3_stmt *stmt, int keys_only, int held, char *buf, int cap,
		int *klen, int *vlen, long long *rev, int max, int *n, int *need) {
	int rc = held ? SLIP_ROW : sqlite3_step(stmt);
	int used = 0;
	*n = 0;
	while (rc == SLIP_ROW) {
		const void *k = sqlite3_column_blob(stmt, 0);
		int kl = sqlite3_column_bytes(stmt, 0);
		const void *v = 0;
		int vl = 0;
		if (!keys_only) {
			v = sqlite3_column_blob(stmt, 1);
			vl = sqlite3_column_bytes(stmt, 1);
		}
		if (*n == max || cap - used < kl + vl) {
			*need = kl + vl;
			return SLIP_ROW;
		}
		if (kl) memcpy(buf + used, k, kl);
		if (vl) memcpy(buf + used + kl, v, vl);
		used += kl + vl;
		klen[*n] = kl;
		vlen[*n] = vl;
		rev[*n] = sqlite3_column_int64(stmt, keys_only ? 1 : 2);
		(*n)++;
		rc = sqlite3_step(stmt);
	}
	return rc;
}

// slip_wal is what the writer's WAL hook shares with Go: the WAL's size in
// frames after the last commit.
typedef struct {
	int frames;
} slip_wal;

// slip_wal_hook runs after each commit of the writer. Setting it turns off
// SQLite's automatic checkpoint, which would copy the WAL into the database
// inside the commit that crossed wal_autocheckpoint: the store decides when
// to checkpoint from the size it records (writeBatch, checkpoint.go).
static int slip_wal_hook(void *arg, sqlite3 *db, const char *schema, int frames) {
	((slip_wal *)arg)->frames = frames;
	return 0;
}

static void slip_set_wal_hook(sqlite3 *db, slip_wal *w) {
	sqlite3_wal_hook(db, slip_wal_hook, w);
}
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"unsafe"

	"github.com/slipstreamkv/slipstream/sdk"
)

// rawConn is a connection used through the C API: the store's one writer
// after Open, and the checkpointer's. A batch's rows are bound and stepped
// in C with one cgo call per batch (database/sql spends a cgo call and an
// interface conversion per value).
type rawConn struct {
	db     *C.sqlite3
	wal    *C.slip_wal                // shared with the WAL hook (writers only); C memory
	stmts  map[string]*C.sqlite3_stmt // prepared statements, by text
	packed packed                     // the last batch's rows (pack)
}

// The statements of a batch's rows.
const (
	qInsert = `INSERT INTO kv (key, value, revision) VALUES (?, ?, ?)`
	qFind   = `SELECT id, length(key) + length(value) FROM kv WHERE key = ?`
	qUpdate = `UPDATE kv SET value = ?, revision = ? WHERE id = ?`
	qRemove = `DELETE FROM kv WHERE id = ?`
)

const (
	openReadWrite = 0x00000002 // SQLITE_OPEN_READWRITE
	openNoMutex   = 0x00008000 // SQLITE_OPEN_NOMUTEX: the store serializes its writer
)

// openRaw opens path, which Open has created and set to WAL, with the
// writer's settings.
func openRaw(path string, cfg Config) (*rawConn, error) {
	c, err := openConn(path, cfg)
	if err != nil {
		return nil, err
	}
	db := c.db
	// When the writer starts the WAL over, a file that grew past the limit
	// of writeBatch (a long read held the checkpoints back) shrinks back to
	// it. A smaller limit would cost every cycle: rewriting the file in
	// place is cheaper than growing it again (measured: BENCHMARKS.md).
	pragmas := fmt.Sprintf(`PRAGMA synchronous=%s; PRAGMA cache_size=-%d; PRAGMA journal_size_limit=%d;`,
		cfg.Synchronous, cfg.CacheSize/1024, int64(walLimitFactor+1)*int64(cfg.WALAutocheckpoint)*4096)
	if err := c.exec(pragmas); err != nil {
		c.close()
		return nil, err
	}
	// Setting the hook turns SQLite's automatic checkpoint off on this
	// connection; no PRAGMA wal_autocheckpoint may run on it after this.
	// Only the writers (the store's and the checkpointer's) keep the WAL's
	// size: a view has no hook, and no slip_wal.
	c.wal = (*C.slip_wal)(C.calloc(1, C.sizeof_slip_wal))
	C.slip_set_wal_hook(db, c.wal)
	return c, nil
}

// openConn opens path, which Open has created and set to WAL, with the
// configured busy timeout.
func openConn(path string, cfg Config) (*rawConn, error) {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var db *C.sqlite3
	if rc := C.sqlite3_open_v2(cpath, &db, openReadWrite|openNoMutex, nil); rc != 0 {
		err := fmt.Errorf("open %s: sqlite error %d", path, int(rc))
		if db != nil {
			err = fmt.Errorf("open %s: %s", path, C.GoString(C.sqlite3_errmsg(db)))
			C.sqlite3_close_v2(db)
		}
		return nil, err
	}
	c := &rawConn{db: db}
	C.sqlite3_busy_timeout(db, C.int(cfg.BusyTimeout))
	return c, nil
}

// walFrames is the WAL's size in frames (pages) after the last commit.
func (c *rawConn) walFrames() int { return int(c.wal.frames) }

// pagesWritten is how many pages c has written since it opened: for the
// writer, the WAL frames its commits appended.
func (c *rawConn) pagesWritten() int64 { return int64(C.slip_pages_written(c.db)) }

// inTransaction says a transaction is open on c.
func (c *rawConn) inTransaction() bool { return C.sqlite3_get_autocommit(c.db) == 0 }

// checkpoint copies what it can of the WAL into the database without
// waiting for readers or the writer (SQLITE_CHECKPOINT_PASSIVE).
func (c *rawConn) checkpoint() error {
	schema := C.CString("main")
	defer C.free(unsafe.Pointer(schema))
	if C.sqlite3_wal_checkpoint_v2(c.db, schema, 0, nil, nil) != 0 {
		return c.err("checkpoint")
	}
	return nil
}

func (c *rawConn) err(what string) error {
	return &rawError{what: what, msg: C.GoString(C.sqlite3_errmsg(c.db)), code: int(C.sqlite3_extended_errcode(c.db))}
}

// rawError is a failure of a statement on a rawConn.
type rawError struct {
	what, msg string
	code      int // SQLite's extended result code
}

func (e *rawError) Error() string { return fmt.Sprintf("sqlite: %s: %s", e.what, e.msg) }

// exec runs statements that return no rows.
func (c *rawConn) exec(q string) error {
	cq := C.CString(q)
	defer C.free(unsafe.Pointer(cq))
	if C.sqlite3_exec(c.db, cq, nil, nil, nil) != 0 {
		return c.err(q)
	}
	return nil
}

// packed is a batch's mutations laid out for the C loops: lengths,
// revisions and whether each is a put in arrays, keys and values back to
// back in data. The writer packs every batch into the same one, whose
// arrays then stop growing after the first batches: C reads them only
// during the call.
type packed struct {
	put        []C.uchar
	klen, vlen []C.int
	rev        []C.longlong
	data       []byte
}

// pack lays ms out in c's packed and returns it.
func (c *rawConn) pack(ms []*sdk.Mutation) *packed {
	p := &c.packed
	n := len(ms)
	p.put, p.klen, p.vlen, p.rev = grow(p.put, n), grow(p.klen, n), grow(p.vlen, n), grow(p.rev, n)
	size := 0
	for _, m := range ms {
		size += len(m.Key) + len(m.Value)
	}
	p.data = grow(p.data, max(size, 1))[:0]
	for i, m := range ms {
		p.klen[i], p.rev[i] = C.int(len(m.Key)), C.longlong(m.Revision)
		p.data = append(p.data, m.Key...)
		if m.Op == sdk.OpPut {
			p.put[i], p.vlen[i] = 1, C.int(len(m.Value))
			p.data = append(p.data, m.Value...)
		} else {
			p.put[i], p.vlen[i] = 0, 0
		}
	}
	p.data = p.data[:max(len(p.data), 1)] // never empty: C gets &data[0]
	return p
}

// grow returns s resliced to n elements, reallocated if its capacity is
// short; the elements' values are left as they were.
func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n, n+n/4)
	}
	return s[:n]
}

// insertRows appends puts to kv as new rows, in one cgo call.
func (c *rawConn) insertRows(puts []*sdk.Mutation) error {
	if len(puts) == 0 {
		return nil
	}
	insert, err := c.stmt(qInsert)
	if err != nil {
		return err
	}
	p := c.pack(puts)
	if C.slip_insert(insert, C.int(len(puts)), &p.klen[0], &p.vlen[0], &p.rev[0],
		(*C.char)(unsafe.Pointer(&p.data[0]))) != C.SLIP_DONE {
		return c.err("put")
	}
	return nil
}

// applyRows writes muts, at most one per key, to kv in one cgo call, and
// returns the rows and bytes their keys held before.
func (c *rawConn) applyRows(muts []*sdk.Mutation) (oldKeys, oldBytes int64, err error) {
	if len(muts) == 0 {
		return 0, 0, nil
	}
	var st [4]*C.sqlite3_stmt
	for i, q := range []string{qFind, qInsert, qUpdate, qRemove} {
		if st[i], err = c.stmt(q); err != nil {
			return 0, 0, err
		}
	}
	p := c.pack(muts)
	var old [2]C.longlong
	if C.slip_apply(st[0], st[1], st[2], st[3], C.int(len(muts)), &p.put[0], &p.klen[0], &p.vlen[0], &p.rev[0],
		(*C.char)(unsafe.Pointer(&p.data[0])), &old[0]) != C.SLIP_DONE {
		return 0, 0, c.err("apply")
	}
	return int64(old[0]), int64(old[1]), nil
}

// stmt returns q prepared, from the cache.
func (c *rawConn) stmt(q string) (*C.sqlite3_stmt, error) {
	if st, ok := c.stmts[q]; ok {
		return st, nil
	}
	cq := C.CString(q)
	defer C.free(unsafe.Pointer(cq))
	var st *C.sqlite3_stmt
	if C.sqlite3_prepare_v2(c.db, cq, -1, &st, nil) != 0 {
		return nil, c.err("prepare " + q)
	}
	if c.stmts == nil {
		c.stmts = map[string]*C.sqlite3_stmt{}
	}
	c.stmts[q] = st
	return st, nil
}

// run steps q once with args (int64, string or []byte) and returns the first
// column of its first row as an integer, if it has one.
func (c *rawConn) run(q string, args ...any) (int64, error) {
	st, err := c.stmt(q)
	if err != nil {
		return 0, err
	}
	defer C.sqlite3_reset(st)
	var pin []unsafe.Pointer // C copies of the []byte arguments
	defer func() {
		C.sqlite3_clear_bindings(st)
		for _, p := range pin {
			C.free(p)
		}
	}()
	for i, a := range args {
		switch v := a.(type) {
		case int64:
			C.sqlite3_bind_int64(st, C.int(i+1), C.longlong(v))
		case []byte:
			p := C.CBytes(append(v[:len(v):len(v)], 0)) // never NULL, so never bound as NULL
			pin = append(pin, p)
			C.sqlite3_bind_blob(st, C.int(i+1), p, C.int(len(v)), nil)
		case string:
			p := C.CString(v)
			pin = append(pin, unsafe.Pointer(p))
			C.sqlite3_bind_text(st, C.int(i+1), p, C.int(len(v)), nil)
		default:
			return 0, fmt.Errorf("sqlite: argument %d of %q has type %T", i+1, q, a)
		}
	}
	switch C.sqlite3_step(st) {
	case C.SLIP_ROW:
		return int64(C.sqlite3_column_int64(st, 0)), nil
	case C.SLIP_DONE:
		return 0, nil
	}
	return 0, c.err(q)
}

// interruptOn makes a statement of c running when ctx ends stop, with an
// error, as soon as it can (sqlite3_interrupt, safe from another thread;
// without a statement running it does nothing). The returned func stops
// watching ctx and returns once no interrupt can come any more.
func (c *rawConn) interruptOn(ctx context.Context) (stop func()) {
	ran := make(chan struct{})
	unwatch := context.AfterFunc(ctx, func() {
		defer close(ran)
		C.sqlite3_interrupt(c.db)
	})
	return func() {
		if !unwatch() {
			<-ran
		}
	}
}

// run2 steps q once and returns the first two columns of its first row as
// integers.
func (c *rawConn) run2(q string) (int64, int64, error) {
	st, err := c.stmt(q)
	if err != nil {
		return 0, 0, err
	}
	defer C.sqlite3_reset(st)
	if C.sqlite3_step(st) != C.SLIP_ROW {
		return 0, 0, c.err(q)
	}
	return int64(C.sqlite3_column_int64(st, 0)), int64(C.sqlite3_column_int64(st, 1)), nil
}

// scanBuf holds the rows of one slip_scan call: keys and values back to
// back in data, their lengths and revisions in the arrays.
type scanBuf struct {
	data       []byte
	klen, vlen []C.int
	rev        []C.longlong
}

// Sizes of a scanBuf: rows per cgo call, and the bytes they may take
// unless one row alone is larger.
const (
	scanBufRows  = 1024
	scanBufBytes = 256 << 10
)

// scan runs q, a query whose columns are a key, a value and a revision (a
// key and a revision when keysOnly), with args ([]byte each) bound, and
// calls fn for every row, with slices of a buffer reused once fn returns.
// It copies up to scanBufRows rows per cgo call, where database/sql makes a
// call and copies each value twice per row. A ctx that ends interrupts the
// statement, or stops the scan between two calls.
func (c *rawConn) scan(ctx context.Context, q string, args []any, keysOnly bool, fn func(sdk.Entry) error) error {
	cq := C.CString(q)
	defer C.free(unsafe.Pointer(cq))
	var st *C.sqlite3_stmt
	if C.sqlite3_prepare_v2(c.db, cq, -1, &st, nil) != 0 {
		return c.err("prepare " + q)
	}
	defer C.sqlite3_finalize(st)
	for i, a := range args {
		v, ok := a.([]byte)
		if !ok {
			return fmt.Errorf("sqlite: argument %d of %q has type %T", i+1, q, a)
		}
		p := C.CBytes(append(v[:len(v):len(v)], 0)) // never NULL, so never bound as NULL
		defer C.free(p)
		C.sqlite3_bind_blob(st, C.int(i+1), p, C.int(len(v)), nil)
	}
	defer c.interruptOn(ctx)()
	b := scanBuf{
		data: make([]byte, scanBufBytes),
		klen: make([]C.int, scanBufRows), vlen: make([]C.int, scanBufRows),
		rev: make([]C.longlong, scanBufRows),
	}
	keys, held := C.int(0), C.int(0)
	if keysOnly {
		keys = 1
	}
	for {
		// Between calls too: the interrupt runs on another goroutine and
		// may come only after the scan has gone on for a while.
		if err := ctx.Err(); err != nil {
			return err
		}
		var n, need C.int
		rc := C.slip_scan(st, keys, held, (*C.char)(unsafe.Pointer(&b.data[0])), C.int(len(b.data)),
			&b.klen[0], &b.vlen[0], &b.rev[0], scanBufRows, &n, &need)
		data := b.data
		for i := range int(n) {
			k, v := int(b.klen[i]), int(b.vlen[i])
			e := sdk.Entry{Key: data[:k:k], Revision: uint64(b.rev[i])}
			if !keysOnly {
				e.Value = data[k : k+v : k+v]
			}
			if err := fn(e); err != nil {
				return err
			}
			data = data[k+v:]
		}
		switch rc {
		case C.SLIP_DONE:
			return nil
		case C.SLIP_ROW:
			held = 1
			if n == 0 { // one row larger than the buffer
				b.data = make([]byte, int(need))
			}
		default:
			if err := ctx.Err(); err != nil {
				return err
			}
			return c.err("scan")
		}
	}
}

func (c *rawConn) close() error {
	for _, st := range c.stmts {
		C.sqlite3_finalize(st)
	}
	c.stmts = nil
	rc := C.sqlite3_close_v2(c.db)
	// sqlite3_close_v2 detached the hook, or left the connection a zombie
	// that runs no more commits.
	C.free(unsafe.Pointer(c.wal))
	if rc != 0 {
		return errors.New("sqlite: closing a C API connection failed")
	}
	return nil
}
