// Package registry is the map from a connector type name ("postgres", ...)
// to its constructor that producers and appliers each keep.
package registry

import (
	"sort"
	"sync"
)

// Registry holds constructors of type F by name; safe for concurrent use.
type Registry[F any] struct {
	mu sync.Mutex
	m  map[string]F
}

// Register adds or replaces the constructor for typ.
func (r *Registry[F]) Register(typ string, f F) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[string]F{}
	}
	r.m[typ] = f
}

// Get returns the constructor for typ.
func (r *Registry[F]) Get(typ string) (F, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f, ok := r.m[typ]
	return f, ok
}

// Types lists the registered names, sorted.
func (r *Registry[F]) Types() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.m))
	for k := range r.m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
