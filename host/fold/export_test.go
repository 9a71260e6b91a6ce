package fold

// Hooks switch a fold's defences off, for the tests that prove each
// defence matters (a defended fold beside a twin without it).
type Hooks = hooks

// SetHooks switches the defences h names off in c.
func (c *Config) SetHooks(h Hooks) { c.hooks = h }
