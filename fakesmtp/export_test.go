package fakesmtp

// Waiters is how many waits are registered with srv, and whether its
// dispatcher goroutine is running: tests block on it instead of sleeping.
func Waiters(srv *Server) (n int, dispatching bool) {
	srv.wait.mu.Lock()
	defer srv.wait.mu.Unlock()
	return len(srv.wait.waiters), srv.wait.running
}

// ShardOf is the index of the oracle shard that counts addr.
func ShardOf(o *Oracle, addr string) int { return o.shardOf(clip(Normalize(addr))) }
