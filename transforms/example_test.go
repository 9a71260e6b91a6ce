package transforms_test

import (
	"context"
	"fmt"
	"log"

	"github.com/slipstreamkv/slipstream/sdk"
	"github.com/slipstreamkv/slipstream/transforms"
)

// A chain that renames keys, then drops those outside an allow list. The
// delete follows its put through the rename.
func ExampleChain_Process() {
	ctx := context.Background()
	rt, err := transforms.NewRuntime(ctx, transforms.Options{CacheDir: sharedCache()})
	if err != nil {
		log.Fatal(err)
	}
	defer rt.Close(ctx)

	chain, err := rt.NewChain(ctx, []transforms.Module{
		{Name: "rename", Path: wasm("rename"), Config: map[string]any{"from": "route.", "to": "r."}},
		{Name: "keyfilter", Path: wasm("keyfilter"), Config: map[string]any{"allow": []any{"r.*"}}},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer chain.Close(ctx)

	out, err := chain.Process(ctx, []sdk.Mutation{
		{Op: sdk.OpPut, Key: []byte("route.a"), Value: []byte("10.0.0.1"), Revision: 1},
		{Op: sdk.OpPut, Key: []byte("tmp.b"), Value: []byte("x"), Revision: 2},
		{Op: sdk.OpDelete, Key: []byte("route.a"), Revision: 3},
	})
	if err != nil {
		log.Fatal(err)
	}
	for _, o := range out {
		switch {
		case o.Err != nil:
			fmt.Println("failed:", o.Err)
		case o.Keep:
			fmt.Printf("fold %v %s %q\n", o.Record.Op, o.Record.Key, o.Record.Value)
		default:
			fmt.Println("dropped")
		}
	}
	// Output:
	// fold put r.a "10.0.0.1"
	// dropped
	// fold delete r.a ""
}
