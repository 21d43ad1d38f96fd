// Package resource replaces FerretDB 1.24's internal/util/resource in the project's build (deploy/local/mongo.sh):
// lifetime tracking is off.
//
// Upstream, Track adds every iterator, cursor and connection it is given to a pprof profile, which records the
// caller's stack (runtime.Callers), and sets a finalizer that panics — stopping the server — if the object is
// collected before Untrack. It is a debugging aid for FerretDB's developers. On the project's write mix it cost ~9% of
// the server's CPU: its own profile during bench/dispatch.py showed resource.Track → pprof.(*Profile).Add →
// runtime.callers at 8.2%, Untrack at 1.0%. A leaked iterator now costs its memory until it is collected, as in
// any Go program, instead of crashing the server.
package resource

// Token should be a field of a tracked object (kept for FerretDB's callers).
type Token byte

// NewToken returns a new Token.
func NewToken() *Token {
	return new(Token)
}

// Track does nothing (see the package comment).
func Track(obj any, token *Token) {}

// Untrack does nothing (see the package comment).
func Untrack(obj any, token *Token) {}
