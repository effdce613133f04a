// Command httpbl-hello is a hello-world web server behind the HttpBL
// middleware: clients listed in an Http:BL zone get 403.
//
//	go run ./examples/httpbl-hello -zone bl.example.net -resolver 127.0.0.1:8053
//
// asks the zone of `make run`'s bhrd; with -key and no -resolver it asks
// Project Honeypot through the system's resolver.
package main

import (
	"flag"
	"log"
	"net/http"
	"net/netip"
	"time"

	"github.com/bhrd/bhrd/pkg/httpbl"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8081", "address to serve on")
	key := flag.String("key", "", "Http:BL access key")
	zone := flag.String("zone", "dnsbl.httpbl.org", "the blacklist's zone")
	resolver := flag.String("resolver", "", "DNS server host:port (default: the system's)")
	proxy := flag.String("trusted-proxy", "", "a reverse proxy's prefix whose X-Forwarded-For is believed")
	negTTL := flag.Duration("negative-ttl", 10*time.Minute, "how long a \"not listed\" answer is kept")
	flag.Parse()

	o := httpbl.Options{AccessKey: *key, Zone: *zone, IPv6: *zone != "dnsbl.httpbl.org", NegativeTTL: *negTTL,
		OnDecision: func(r *http.Request, d httpbl.Decision) {
			if d.Deny || d.Err != nil {
				log.Printf("%s %s: deny=%v %s %v", d.Client, r.URL.Path, d.Deny, d.Reason, d.Err)
			}
		}}
	if *resolver != "" {
		o.Resolvers = []string{*resolver}
	}
	if *proxy != "" {
		o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix(*proxy)}
	}
	c, err := httpbl.New(o)
	if err != nil {
		log.Fatal(err)
	}
	hello := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("hello\n")) })
	log.Printf("serving on http://%s", *listen)
	log.Fatal(http.ListenAndServe(*listen, c.Middleware(hello)))
}
