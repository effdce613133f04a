// Package bgp is bhrd's embedded BGP speaker: a GoBGP v3 server that
// announces and withdraws remote-triggered blackhole (RTBH) routes to
// peering routers.
//
// It knows nothing of blocks: an announcement is a Route (prefix, next hop,
// communities, large communities, LOCAL_PREF) under an opaque owner name,
// which bhrd sets to the enforcer's ident. It owns the wire: the global and
// peer configuration, the path attributes, feeding GoBGP, graceful restart
// in the restarting-speaker role, peer state and events, and GoBGP's logs
// (sent to zap with a truthful level).
//
// Lifecycle: New validates the Config; Start runs the server without
// peers; the embedder Announces everything its store holds; Ready adds the
// peers, which then receive the whole table and End-of-RIB, so that a
// graceful-restart helper keeps what is still blocked and drops the rest;
// Stop closes the sessions, without a NOTIFICATION when graceful restart is
// on, so peers keep the routes while bhrd restarts.
//
// A program using TCP-MD5 passwords must turn off Go's default Multipath
// TCP listeners (//go:debug multipathtcp=0 in package main): the kernel
// refuses TCP_MD5SIG on MPTCP sockets, and Start reports the problem.
package bgp
