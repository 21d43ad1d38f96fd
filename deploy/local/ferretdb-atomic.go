// Added to FerretDB v1's handler package by deploy/local/mongo.sh when it builds the local server.
//
// FerretDB 1 applies update, findAndModify and delete as "query in Go, then write by _id" without
// re-checking the filter, so two concurrent updates of one document can lose one of them, and a
// conditional update (compare-and-set on a version field) can succeed twice. MongoDB makes every
// single-document write atomic, and the services rely on exactly that (see the README). Serialising
// these commands in the one server process restores that guarantee locally; SQLite serialises its
// writers anyway, so little throughput is lost.

package handler

import "sync"

var smeportalWriteMu sync.Mutex
