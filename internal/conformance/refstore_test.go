package conformance

import (
	"context"
	"io"

	"github.com/slipstreamkv/slipstream/internal/conformance/refstore"
	"github.com/slipstreamkv/slipstream/sdk"
)

// refTarget is an in-process target whose instances are reference stores
// broken by knobs and wrapped by wrap (nil: not wrapped). Unlike InProcess,
// it can kill an instance between calls.
func refTarget(name string, knobs refstore.Knobs, wrap func(*refstore.Store) sdk.Store) Target {
	return Target{
		name:    name,
		canKill: true,
		start: func(context.Context, io.Writer) (instance, error) {
			r := refstore.New(knobs)
			var s sdk.Store = r
			if wrap != nil {
				s = wrap(r)
			}
			return refInstance{newLocalInstance(s), r}, nil
		},
	}
}

type refInstance struct {
	localInstance
	ref *refstore.Store
}

func (i refInstance) kill() error {
	i.ref.Kill()
	return nil
}
