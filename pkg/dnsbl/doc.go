// Package dnsbl serves a block list as a DNS blacklist zone (RFC 5782)
// with Project Honeypot Http:BL-compatible answers, over UDP and TCP
// (github.com/miekg/dns). It is usable without the daemon: a Table holds
// the listed prefixes, a Server answers for the configured zones from
// it. The bhrd daemon fills the Table from its queue (pkg/plane/dnsblplane).
//
// An address inside a listed prefix (longest prefix wins) is answered
// with an A record 127.<days>.<threat>.<type>: days since the block was
// added (0–255), a threat score (see Threat) and a type bit set that is
// never 0 (0 means "search engine" to Http:BL clients, which would not
// deny it). Everything else in the zone is NXDOMAIN with the zone's SOA.
package dnsbl
