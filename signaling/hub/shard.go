package hub

import "sync"

// shardCount spreads each map over this many locks, so that the signal path
// never takes a hub-wide lock.
const shardCount = 32

// shardedMap is a map split into shards, each behind its own RWMutex. Its
// shard locks are leaves: nothing else is locked while one is held, except
// where the lock order in the package doc says so.
type shardedMap[V any] struct {
	shards [shardCount]mapShard[V]
}

type mapShard[V any] struct {
	mu sync.RWMutex
	m  map[string]V
	_  [40]byte // keep shards on separate cache lines
}

func newShardedMap[V any]() *shardedMap[V] {
	s := &shardedMap[V]{}
	for i := range s.shards {
		s.shards[i].m = make(map[string]V)
	}
	return s
}

// shardOf hashes key with FNV-1a.
func (s *shardedMap[V]) shardOf(key string) *mapShard[V] {
	h := uint32(2166136261)
	for i := 0; i < len(key); i++ {
		h ^= uint32(key[i])
		h *= 16777619
	}
	return &s.shards[h%shardCount]
}

func (s *shardedMap[V]) get(key string) (V, bool) {
	sh := s.shardOf(key)
	sh.mu.RLock()
	v, ok := sh.m[key]
	sh.mu.RUnlock()
	return v, ok
}

// putIfAbsent stores v unless key is taken, and reports whether it stored.
func (s *shardedMap[V]) putIfAbsent(key string, v V) bool {
	sh := s.shardOf(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if _, ok := sh.m[key]; ok {
		return false
	}
	sh.m[key] = v
	return true
}

// getOrCreate returns the value of key, storing mk() first if absent.
func (s *shardedMap[V]) getOrCreate(key string, mk func() V) (V, bool) {
	sh := s.shardOf(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if v, ok := sh.m[key]; ok {
		return v, false
	}
	v := mk()
	sh.m[key] = v
	return v, true
}

// deleteIf removes key if match(value) is true, and reports whether it did.
func (s *shardedMap[V]) deleteIf(key string, match func(V) bool) bool {
	sh := s.shardOf(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if v, ok := sh.m[key]; ok && match(v) {
		delete(sh.m, key)
		return true
	}
	return false
}

// collect appends every value to dst, one shard at a time.
func (s *shardedMap[V]) collect(dst []V) []V {
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.RLock()
		for _, v := range sh.m {
			dst = append(dst, v)
		}
		sh.mu.RUnlock()
	}
	return dst
}

func (s *shardedMap[V]) len() int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.RLock()
		n += len(sh.m)
		sh.mu.RUnlock()
	}
	return n
}
