// A minimal S3-compatible server for local runs and tests: gofakes3 with its in-memory backend.
package main

import (
	"flag"
	"log"
	"net/http"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9000", "listen address")
	flag.Parse()
	faker := gofakes3.New(s3mem.New(), gofakes3.WithAutoBucket(true))
	log.Printf("gofakes3 listening on %s", *addr)
	log.Fatal(http.ListenAndServe(*addr, faker.Server()))
}
