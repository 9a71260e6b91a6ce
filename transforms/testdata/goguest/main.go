//go:build wasip1

// Command goguest is a test transform built with sdk/guest. It keeps every
// record unless its configuration names keys to misbehave on:
//
//	panic = "K"   panic on key K
//	hog   = "K"   allocate without bound on key K
//	loop  = "K"   never return on key K
//	fail  = "K"   report an error on key K
//	stamp = true  replace each put's value with the number of records this
//	              instance has seen, which shows when an instance is replaced
//	probe = true  replace each put's value with what the guest can observe
//	              of the host: the time, random bytes, a host file and the
//	              environment
package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"strconv"
	"time"

	"github.com/slipstreamkv/slipstream/sdk/guest"
)

type config struct {
	Panic string `json:"panic"`
	Hog   string `json:"hog"`
	Loop  string `json:"loop"`
	Fail  string `json:"fail"`
	Stamp bool   `json:"stamp"`
	Probe bool   `json:"probe"`
}

var (
	cfg   config
	plain bool // nothing configured: keep every record at the least cost
	seen  int
	hoard [][]byte
	stamp []byte
)

func init() {
	guest.Register(guest.Transform{
		Init: func(c []byte) error {
			err := guest.DecodeConfig(c, &cfg)
			plain = cfg == config{}
			return err
		},
		Record: func(r guest.Record) guest.Result {
			if plain {
				return guest.Result{}
			}
			seen++
			switch string(r.Key) {
			case "": // unset triggers name no key
			case cfg.Panic:
				panic("boom on " + string(r.Key))
			case cfg.Hog:
				for {
					hoard = append(hoard, make([]byte, 1<<20))
				}
			case cfg.Loop:
				//lint:ignore SA5002 spinning is what this guest is for
				for {
				}
			case cfg.Fail:
				return guest.Result{Err: errors.New("refusing " + string(r.Key))}
			}
			if cfg.Probe {
				return guest.Result{Value: probe()}
			}
			if cfg.Stamp {
				stamp = strconv.AppendInt(stamp[:0], int64(seen), 10)
				return guest.Result{Value: stamp}
			}
			return guest.Result{}
		},
	})
}

// probe reports what the sandbox lets the guest see.
func probe() []byte {
	random := make([]byte, 8)
	rand.Read(random)
	fs := "denied"
	if _, err := os.ReadFile("/etc/passwd"); err == nil {
		fs = "readable"
	}
	start := time.Now()
	time.Sleep(time.Second)
	return []byte("now=" + start.UTC().Format(time.RFC3339) +
		" slept=" + strconv.FormatBool(time.Since(start) >= time.Second) +
		" rand=" + hex.EncodeToString(random) +
		" fs=" + fs +
		" env=" + strconv.Itoa(len(os.Environ())))
}

func main() {}
