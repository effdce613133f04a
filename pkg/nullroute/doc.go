// Package nullroute owns bhrd's blackhole routes in the Linux kernel: it
// lists, adds and removes RTN_BLACKHOLE routes for IPv4 and IPv6 prefixes in
// one routing table, and nothing else. It knows nothing of blocks; the
// enforcer maps blocks to prefixes.
//
// # Which routes are ours
//
// A route belongs to bhrd when it is in the configured table (default main,
// 254), has type blackhole and carries bhrd's route protocol number
// (rtm_protocol, default [DefaultProtocol] = 66). 66 is not assigned in
// iproute2's /etc/iproute2/rt_protos nor in the kernel's RTPROT_* list
// (kernel 0-4, gated 8, ra 9, mrt 10, zebra 11, bird 12, dnrouted 13, xorp 14,
// ntk 15, dhcp 16, mrouted 17, keepalived 18, babel 42, openr 99, and FRR's
// 186-198). Operators can name it for `ip route` output with a line
// "66 bhrd" in /etc/iproute2/rt_protos.d/bhrd.conf. Routes of any other
// protocol (kernel, boot, static, routing daemons) are never listed, replaced
// or deleted, even when their prefix equals one of ours.
//
// To honour that, routes are added with NLM_F_CREATE but without
// NLM_F_REPLACE: with REPLACE the kernel overwrites the first route of equal
// prefix, TOS and metric whatever its protocol (IPv4 and IPv6 alike).
// Without it, IPv4 inserts our route in front of a foreign one (so the
// blackhole takes effect) and answers EEXIST only when our identical route is
// already there, which Add treats as success. IPv6 answers EEXIST both for
// our identical route and for a foreign blackhole (or other lo route) with the
// same prefix and metric; Add then looks our route up and reports
// [ErrConflict] for that prefix when the route is not ours. Deletes carry our
// protocol, the blackhole type and, for IPv6 (whose kernel code ignores the
// route type on delete), the loopback ifindex every blackhole route uses.
//
// # Namespaces and sockets
//
// [New] takes an injected *netlink.Handle, used for dumps ([Table.List]).
// Writes go through the package's own NETLINK_ROUTE socket, because
// netlink.Handle exposes no socket and sends one message per round trip. That
// socket is opened in Config.Netns, which must be the namespace the handle
// was opened in (netlink.NewHandleAt(ns) → Config{Netns: ns}); the zero value
// means the namespace the process runs in.
//
// # Batching
//
// Add and Delete pack many RTM_NEWROUTE / RTM_DELROUTE messages into one
// sendmsg (up to [DefaultBatchBytes], bounded by the socket buffers). The
// kernel processes them in order within the sendmsg call and sends an error
// message only for those that fail, plus an ACK for the last message of the
// batch, which marks the batch's end. Each message carries its own sequence
// number, so every error maps back to its prefix. If the kernel had to drop
// replies because the receive buffer was full (ENOBUFS), every message of the
// batch whose outcome is unknown is sent again in smaller batches: adding and
// deleting are idempotent here, so repeating them is safe.
//
// Errors for single prefixes come back as a *[BatchError] listing
// *[PrefixError] values (every other prefix was applied); any other error
// means the operation stopped and the state of the prefixes not yet reported
// is unknown, which a retry resolves.
package nullroute
