// Command httpfloor is the HTTP floor of issue 16's figures: a trivial Go
// server that answers bhrbench's ingest-seq and query scenarios as bhrd
// would, without a store, authentication or logging, so that bhrbench
// against it measures the client, net/http and loopback alone.
//
//	go run ./scripts/httpfloor -listen 127.0.0.1:9300
package main

import (
	"encoding/json"
	"flag"
	"log"
	"net/http"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:9300", "address to listen on")
	flag.Parse()
	mux := http.NewServeMux()
	writeJSON := func(w http.ResponseWriter, status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
	}
	mux.HandleFunc("GET /bhr/api/stats", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, map[string]any{"block_pending": 0, "unblock_pending": 0, "current": 0, "expected": 0, "sources": map[string]int{}})
	})
	mux.HandleFunc("GET /bhr/api/whitelist/", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, []any{}) })
	mux.HandleFunc("GET /bhr/api/query/{cidr...}", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, []any{}) })
	mux.HandleFunc("POST /bhr/api/block", func(w http.ResponseWriter, r *http.Request) {
		cidr := r.FormValue("cidr")
		writeJSON(w, 201, map[string]any{"id": 1, "cidr": cidr + "/32", "source": r.FormValue("source"), "why": r.FormValue("why"),
			"added": time.Now().UTC().Format("2006-01-02T15:04:05.000000Z"), "unblock_at": nil})
	})
	log.Fatal(http.ListenAndServe(*listen, mux))
}
