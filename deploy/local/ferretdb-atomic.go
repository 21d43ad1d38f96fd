// Added to FerretDB v1's handler package by deploy/local/mongo.sh when it builds the local server.
//
// FerretDB 1 applies update, findAndModify and delete as "query in Go, then write by _id" without
// re-checking the filter, so two concurrent updates of one document can lose one of them, and a
// conditional update (compare-and-set on a version field) can succeed twice. MongoDB makes every
// single-document write atomic, and the services rely on exactly that (see the README). Serialising
// these commands per collection restores that guarantee locally; writes to other collections (and all
// reads) go on in parallel, and SQLite serialises the writers of one database file anyway.

package handler

import "sync"

var (
	smeportalLocksMu sync.Mutex
	smeportalLocks   = map[string]*sync.Mutex{}
)

// smeportalLock locks one collection's writes and returns the unlock function.
func smeportalLock(db, collection string) func() {
	smeportalLocksMu.Lock()
	mu, ok := smeportalLocks[db+"."+collection]
	if !ok {
		mu = new(sync.Mutex)
		smeportalLocks[db+"."+collection] = mu
	}
	smeportalLocksMu.Unlock()
	mu.Lock()
	return mu.Unlock
}
