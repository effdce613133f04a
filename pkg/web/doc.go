// Package web serves BHR's pages from the daemon: add a block, query,
// unblock with a reason, stats, lists, the limited public pages, login
// and logout, admin pages for the whitelist and source blacklist, and the
// enforcers. Every change goes through the queue Service, so it carries
// the same rules and audit lines as the API.
//
// Pages are server-rendered html/template files embedded in the binary,
// with a stylesheet of our own and no JavaScript. A session is an API
// token named "web session", created at login, held in an HttpOnly,
// SameSite=Lax cookie (Secure under TLS) and revoked at logout: so a
// session survives a restart, is shared by the instances on one store,
// and ends when the user is disabled. Forms are protected from cross-site
// requests by net/http's CrossOriginProtection. Lists are keyset-paged;
// nothing loads a whole table.
package web
