// Package bgptest provides the BGP peers that end-to-end tests run bhrd
// against: Router, a second, independent GoBGP server playing the peering
// router (with its RIB readable, decoded, and a best-path watch for latency
// measurements), and BIRD, a BIRD 2 daemon started by the test with a birdc
// query helper. Both listen on 127.0.0.1 on a free port and wait for bhrd to
// connect. Test code only: it calls t.Fatal and registers t.Cleanup.
package bgptest
