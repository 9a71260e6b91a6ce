package store

/*
#include <stdlib.h>

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
const char *sqlite3_errmsg(sqlite3 *db);
int sqlite3_busy_timeout(sqlite3 *db, int ms);

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
*/
import "C"

import (
	"errors"
	"fmt"
	"unsafe"

	"github.com/slipstreamkv/slipstream/sdk"
)

// rawConn is a writer connection used through the C API, for the one
// statement whose per-row cost matters: the inserts of a bulk load, bound
// and stepped in C with one cgo call per batch (database/sql spends a cgo
// call and an interface conversion per value).
type rawConn struct {
	db     *C.sqlite3
	insert *C.sqlite3_stmt            // INSERT INTO kv, prepared on first use
	stmts  map[string]*C.sqlite3_stmt // the other statements, by text
}

const (
	openReadWrite = 0x00000002 // SQLITE_OPEN_READWRITE
	openNoMutex   = 0x00008000 // SQLITE_OPEN_NOMUTEX: the store serializes its writer
)

// openRaw opens path, which Open has created and set to WAL, with the
// writer's settings.
func openRaw(path string, cfg Config) (*rawConn, error) {
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
	pragmas := fmt.Sprintf(`PRAGMA synchronous=%s; PRAGMA wal_autocheckpoint=%d; PRAGMA cache_size=-%d;`,
		cfg.Synchronous, cfg.WALAutocheckpoint, cfg.CacheSize/1024)
	if err := c.exec(pragmas); err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

func (c *rawConn) err(what string) error {
	return fmt.Errorf("sqlite: %s: %s", what, C.GoString(C.sqlite3_errmsg(c.db)))
}

// exec runs statements that return no rows.
func (c *rawConn) exec(q string) error {
	cq := C.CString(q)
	defer C.free(unsafe.Pointer(cq))
	if C.sqlite3_exec(c.db, cq, nil, nil, nil) != 0 {
		return c.err(q)
	}
	return nil
}

// insertRows appends puts to kv as new rows, in one cgo call.
func (c *rawConn) insertRows(puts []*sdk.Mutation) error {
	if len(puts) == 0 {
		return nil
	}
	if c.insert == nil {
		q := C.CString(`INSERT INTO kv (key, value, revision) VALUES (?, ?, ?)`)
		defer C.free(unsafe.Pointer(q))
		if C.sqlite3_prepare_v2(c.db, q, -1, &c.insert, nil) != 0 {
			return c.err("prepare insert")
		}
	}
	klen := make([]C.int, len(puts))
	vlen := make([]C.int, len(puts))
	rev := make([]C.longlong, len(puts))
	size := 0
	for _, m := range puts {
		size += len(m.Key) + len(m.Value)
	}
	data := make([]byte, 0, max(size, 1))
	for i, m := range puts {
		klen[i], vlen[i], rev[i] = C.int(len(m.Key)), C.int(len(m.Value)), C.longlong(m.Revision)
		data = append(data, m.Key...)
		data = append(data, m.Value...)
	}
	data = data[:max(size, 1)]
	rc := C.slip_insert(c.insert, C.int(len(puts)), &klen[0], &vlen[0], &rev[0],
		(*C.char)(unsafe.Pointer(&data[0])))
	if rc != C.SLIP_DONE {
		return c.err("put")
	}
	return nil
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

func (c *rawConn) close() error {
	if c.insert != nil {
		C.sqlite3_finalize(c.insert)
		c.insert = nil
	}
	for _, st := range c.stmts {
		C.sqlite3_finalize(st)
	}
	c.stmts = nil
	if C.sqlite3_close_v2(c.db) != 0 {
		return errors.New("sqlite: closing the load writer failed")
	}
	return nil
}
