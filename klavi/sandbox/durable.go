package sandbox

func (s *Server) unlock()                       { s.mu.Unlock() }
func (s *Server) sync() error                   { return nil }
func (s *Server) touchPayment(p *payment)       {}
func (s *Server) touchConsent(cs *consentState) {}
