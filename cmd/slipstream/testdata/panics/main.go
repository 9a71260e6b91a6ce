// Command panics dereferences a nil pointer, so that the startup tests can
// prove their panic detector matches what the Go runtime prints.
package main

type service struct{ closers []func() }

func (s *service) close() {
	for _, c := range s.closers {
		c()
	}
}

func main() {
	var s *service
	s.close()
}
