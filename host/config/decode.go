package config

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"time"
)

// decoder copies the tree BurntSushi/toml parsed into the Config structs,
// strictly: an unknown key or a value of the wrong type is an error at its
// indexed path. toml.Decode into the structs themselves would stop at the first
// type error, report it at the line of the last [[fold]] rather than the one
// at fault, and name unknown keys without their array index.
type decoder struct {
	errs *collector
}

// defaulter is implemented by the structs that have defaults; the decoder
// calls it on every element it creates, before filling in what the file sets.
type defaulter interface{ setDefaults() }

var (
	durationType = reflect.TypeFor[Duration]()
	byteSizeType = reflect.TypeFor[ByteSize]()
)

func (d *decoder) decode(p path, data any, rv reflect.Value) {
	switch rv.Type() {
	case durationType:
		d.duration(p, data, rv)
		return
	case byteSizeType:
		d.byteSize(p, data, rv)
		return
	}
	switch rv.Kind() {
	case reflect.String:
		if s, ok := data.(string); ok {
			rv.SetString(s)
		} else {
			d.typeError(p, "a string", data)
		}
	case reflect.Bool:
		if b, ok := data.(bool); ok {
			rv.SetBool(b)
		} else {
			d.typeError(p, "true or false", data)
		}
	case reflect.Int:
		n, ok := data.(int64)
		if !ok {
			d.typeError(p, "an integer", data)
		} else if rv.OverflowInt(n) {
			d.errs.add(p, "%d is out of range", n)
		} else {
			rv.SetInt(n)
		}
	case reflect.Interface:
		if data != nil {
			rv.Set(reflect.ValueOf(data))
		}
	case reflect.Struct:
		d.table(p, data, rv)
	case reflect.Map:
		d.tableMap(p, data, rv)
	case reflect.Slice:
		d.list(p, data, rv)
	default:
		panic(fmt.Sprintf("config: no decoder for %s", rv.Type()))
	}
}

func (d *decoder) duration(p path, data any, rv reflect.Value) {
	switch v := data.(type) {
	case string:
		var dur Duration
		if err := dur.UnmarshalText([]byte(v)); err != nil {
			d.errs.add(p, "%v", err)
			return
		}
		rv.SetInt(int64(dur))
	case int64:
		if v != 0 {
			d.errs.add(p, "a duration needs a unit: write %q, not %d", fmt.Sprintf("%ds", v), v)
			return
		}
		rv.SetInt(0)
	default:
		d.typeError(p, `a duration string such as "10s"`, data)
	}
}

func (d *decoder) byteSize(p path, data any, rv reflect.Value) {
	switch v := data.(type) {
	case string:
		var b ByteSize
		if err := b.UnmarshalText([]byte(v)); err != nil {
			d.errs.add(p, "%v", err)
			return
		}
		rv.SetInt(int64(b))
	case int64:
		rv.SetInt(v)
	default:
		d.typeError(p, `a byte size such as 4096 or "4MiB"`, data)
	}
}

// table fills the struct rv from a TOML table, matching keys to toml tags.
func (d *decoder) table(p path, data any, rv reflect.Value) {
	m, ok := data.(map[string]any)
	if !ok {
		d.typeError(p, "a table", data)
		return
	}
	fields := tomlFields(rv.Type())
	for _, k := range slices.Sorted(maps.Keys(m)) {
		i, ok := fields[k]
		if !ok {
			d.errs.add(p.key(k), "unknown key%s", suggest(k, fields))
			continue
		}
		d.decode(p.key(k), m[k], rv.Field(i))
	}
}

// tableMap fills a map[string]T from a TOML table: opaque config tables and
// [bucket.NAME].
func (d *decoder) tableMap(p path, data any, rv reflect.Value) {
	m, ok := data.(map[string]any)
	if !ok {
		d.typeError(p, "a table", data)
		return
	}
	if rv.IsNil() {
		rv.Set(reflect.MakeMapWithSize(rv.Type(), len(m)))
	}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		elem := newElem(rv.Type().Elem())
		d.decode(p.key(k), m[k], elem)
		rv.SetMapIndex(reflect.ValueOf(k), elem)
	}
}

// list fills a slice from a TOML array or array of tables. A single string is
// accepted where a list of strings is expected.
func (d *decoder) list(p path, data any, rv reflect.Value) {
	var items []any
	switch v := data.(type) {
	case []any:
		items = v
	case []map[string]any:
		for _, t := range v {
			items = append(items, t)
		}
	case string:
		if rv.Type().Elem().Kind() != reflect.String {
			d.typeError(p, "an array", data)
			return
		}
		items = []any{v}
	default:
		d.typeError(p, "an array", data)
		return
	}
	out := reflect.MakeSlice(rv.Type(), 0, len(items))
	for i, item := range items {
		elem := newElem(rv.Type().Elem())
		d.decode(p.index(i), item, elem)
		out = reflect.Append(out, elem)
	}
	rv.Set(out)
}

func newElem(t reflect.Type) reflect.Value {
	v := reflect.New(t)
	if def, ok := v.Interface().(defaulter); ok {
		def.setDefaults()
	}
	return v.Elem()
}

func (d *decoder) typeError(p path, want string, got any) {
	d.errs.add(p, "want %s, got %s", want, describe(got))
}

// describe names a TOML value's type, with the value when it is short.
func describe(v any) string {
	switch v := v.(type) {
	case string:
		if len(v) > 40 {
			return "a string"
		}
		return fmt.Sprintf("the string %q", v)
	case int64:
		return fmt.Sprintf("the integer %d", v)
	case float64:
		return fmt.Sprintf("the float %v", v)
	case bool:
		return fmt.Sprintf("%v", v)
	case time.Time:
		return "a datetime"
	case map[string]any:
		return "a table"
	case []any, []map[string]any:
		return "an array"
	}
	return fmt.Sprintf("a %T", v)
}

// tomlFields maps the toml tags of struct type t to field indexes.
func tomlFields(t reflect.Type) map[string]int {
	fields := make(map[string]int, t.NumField())
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("toml"), ",")
		if name != "" && name != "-" {
			fields[name] = i
		}
	}
	return fields
}

// suggest returns ` (did you mean "x"?)` for the known key closest to k, if
// one is close enough to be a likely typo.
func suggest(k string, fields map[string]int) string {
	best, bestDist := "", 3
	for _, f := range slices.Sorted(maps.Keys(fields)) {
		if d := editDistance(strings.ToLower(k), f); d < bestDist && d < len(k) {
			best, bestDist = f, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
