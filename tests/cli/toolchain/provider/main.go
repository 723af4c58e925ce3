// pulumi-resource-pbtest: a tiny resource provider used by pbackend's CLI
// tests. It manages no real infrastructure: every resource lives only in the
// Pulumi state, which is exactly what a state-backend test needs.
//
// One resource, pbtest:index:Item:
//
//	value    string  required; a change is an in-place update
//	key      string  optional; replaceOnChanges, a change forces a replace
//	padBytes int     optional; output `padding` is that many 'x' bytes
//	data     string  optional; echoed once in the outputs and nowhere else
//	fail     bool    optional; Create and Update return an error
//	sleepMs  int     optional; Create, Update and Delete sleep that long
//
// Outputs echo the inputs plus `padding`, `secret` ("secret-"+value, marked
// secret) and `result` ("ok-"+value).
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/pulumi/pulumi-go-provider/infer"
)

const (
	providerName    = "pbtest"
	providerVersion = "0.1.0"
)

func main() {
	p, err := infer.NewProviderBuilder().
		WithDisplayName("pbackend test provider").
		WithDescription("Test-only provider for pbackend: resources that exist only in state.").
		WithResources(infer.Resource(&Item{})).
		Build()
	if err != nil {
		fmt.Fprintf(os.Stderr, "error: %s\n", err)
		os.Exit(1)
	}
	if err := p.Run(context.Background(), providerName, providerVersion); err != nil {
		fmt.Fprintf(os.Stderr, "error: %s\n", err)
		os.Exit(1)
	}
}

// Item is the pbtest:index:Item resource.
type Item struct{}

// ItemArgs are the inputs of an Item.
type ItemArgs struct {
	Value    string  `pulumi:"value"`
	Key      *string `pulumi:"key,optional" provider:"replaceOnChanges"`
	PadBytes *int    `pulumi:"padBytes,optional"`
	Data     *string `pulumi:"data,optional"`
	Fail     *bool   `pulumi:"fail,optional"`
	SleepMs  *int    `pulumi:"sleepMs,optional"`
}

// ItemState is the output state of an Item.
type ItemState struct {
	Value    string  `pulumi:"value"`
	Key      *string `pulumi:"key,optional"`
	PadBytes *int    `pulumi:"padBytes,optional"`
	Data     *string `pulumi:"data,optional"`
	Fail     *bool   `pulumi:"fail,optional"`
	SleepMs  *int    `pulumi:"sleepMs,optional"`
	Padding  string  `pulumi:"padding"`
	Secret   string  `pulumi:"secret" provider:"secret"`
	Result   string  `pulumi:"result"`
}

func (i *Item) Annotate(a infer.Annotator) {
	a.SetToken("index", "Item")
	a.Describe(&i, "A resource that exists only in the Pulumi state.")
}

func (a *ItemArgs) Annotate(an infer.Annotator) {
	an.Describe(&a.Value, "Any string; a change updates the resource in place.")
	an.Describe(&a.Key, "Any string; a change replaces the resource.")
	an.Describe(&a.PadBytes, "Length in bytes of the `padding` output, to make big states.")
	an.Describe(&a.Data, "Any string; echoed once in the outputs (state-size benchmarks).")
	an.Describe(&a.Fail, "When true, Create and Update fail.")
	an.Describe(&a.SleepMs, "Create, Update and Delete sleep this many milliseconds.")
}

func (s *ItemState) Annotate(an infer.Annotator) {
	an.Describe(&s.Padding, "padBytes bytes of 'x'.")
	an.Describe(&s.Secret, "\"secret-\" + value, marked secret.")
	an.Describe(&s.Result, "\"ok-\" + value.")
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func stateOf(in ItemArgs) ItemState {
	pad := deref(in.PadBytes)
	if pad < 0 {
		pad = 0
	}
	return ItemState{
		Value:    in.Value,
		Key:      in.Key,
		PadBytes: in.PadBytes,
		Data:     in.Data,
		Fail:     in.Fail,
		SleepMs:  in.SleepMs,
		Padding:  strings.Repeat("x", pad),
		Secret:   "secret-" + in.Value,
		Result:   "ok-" + in.Value,
	}
}

// act sleeps sleepMs (honouring cancellation) and fails when asked to.
func act(ctx context.Context, op string, sleepMs *int, fail *bool) error {
	if ms := deref(sleepMs); ms > 0 {
		select {
		case <-time.After(time.Duration(ms) * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if deref(fail) {
		return fmt.Errorf("pbtest: %s failed because fail=true", op)
	}
	return nil
}

func newID(name string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return name + "-" + hex.EncodeToString(b)
}

// Create never sleeps or fails during a preview (DryRun).
func (*Item) Create(ctx context.Context, req infer.CreateRequest[ItemArgs]) (infer.CreateResponse[ItemState], error) {
	out := stateOf(req.Inputs)
	if req.DryRun {
		return infer.CreateResponse[ItemState]{Output: out}, nil
	}
	if err := act(ctx, "create", req.Inputs.SleepMs, req.Inputs.Fail); err != nil {
		return infer.CreateResponse[ItemState]{}, err
	}
	return infer.CreateResponse[ItemState]{ID: newID(req.Name), Output: out}, nil
}

// Update never sleeps or fails during a preview (DryRun).
func (*Item) Update(ctx context.Context, req infer.UpdateRequest[ItemArgs, ItemState]) (infer.UpdateResponse[ItemState], error) {
	out := stateOf(req.Inputs)
	if req.DryRun {
		return infer.UpdateResponse[ItemState]{Output: out}, nil
	}
	if err := act(ctx, "update", req.Inputs.SleepMs, req.Inputs.Fail); err != nil {
		return infer.UpdateResponse[ItemState]{}, err
	}
	return infer.UpdateResponse[ItemState]{Output: out}, nil
}

// Delete always succeeds, after sleepMs.
func (*Item) Delete(ctx context.Context, req infer.DeleteRequest[ItemState]) (infer.DeleteResponse, error) {
	return infer.DeleteResponse{}, act(ctx, "delete", req.State.SleepMs, nil)
}
