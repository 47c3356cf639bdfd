package signaling

// CountLoopbackConns makes cfg's server count loopback clients against
// Config.MaxConnsPerAddr, as it counts every other address: tests have no
// other address to attack from.
func CountLoopbackConns(cfg *Config) { cfg.countLoopback = true }

// The budget of the lines each reason of refusal writes at info.
const (
	RefusalBurst = refusalBurst
	RefusalEvery = refusalEvery
)
