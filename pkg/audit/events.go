package audit

import (
	"net/netip"
	"time"

	"go.uber.org/zap"

	"github.com/bhrd/bhrd/pkg/queue"
)

// Event names, as documented in docs/AUDIT.md.
const (
	EventBlockCreated          = "block_created"
	EventBlockExtended         = "block_extended"
	EventBlockDuplicate        = "block_duplicate"
	EventBlockRejected         = "block_rejected"
	EventUnblockNow            = "unblock_now"
	EventSetBlocked            = "set_blocked"
	EventSetUnblocked          = "set_unblocked"
	EventWhitelistAdded        = "whitelist_added"
	EventWhitelistDeleted      = "whitelist_deleted"
	EventSourceBlacklistAdded  = "source_blacklist_added"
	EventSourceBlacklistDelete = "source_blacklist_deleted"
	EventUserAdded             = "user_added"
	EventUserDisabled          = "user_disabled"
	EventUserEnabled           = "user_enabled"
	EventTokenCreated          = "token_created"
	EventTokenRevoked          = "token_revoked"
	EventAuthFailed            = "auth_failed"
	EventSessionStarted        = "session_started"
	EventSessionEnded          = "session_ended"
	EventConfigReloaded        = "config_reloaded"
	EventBGPPeerUp             = "bgp_peer_up"
	EventBGPPeerDown           = "bgp_peer_down"
	EventDNSBLStarted          = "dnsbl_listener_started"
	EventDNSBLStopped          = "dnsbl_listener_stopped"
)

func ts(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// blockFields describe a block: what, why, from which source, until when.
func blockFields(b queue.Block) []zap.Field {
	f := []zap.Field{
		zap.String("cidr", b.CIDR.String()),
		zap.Int64("block_id", b.ID),
		zap.String("source", b.Source),
		zap.String("why", b.Why),
	}
	if b.Indefinite() {
		f = append(f, zap.Bool("indefinite", true))
	} else {
		f = append(f, zap.String("unblock_at", ts(b.UnblockAt)))
	}
	return f
}

// Block records the outcome of one accepted block request.
func (l *Logger) Block(a Actor, res queue.BlockResult) {
	switch res.Outcome {
	case queue.Created:
		l.emit(EventBlockCreated, a, append(blockFields(res.Block), zap.Bool("skip_whitelist", res.Block.SkipWhitelist))...)
	case queue.Extended:
		l.emit(EventBlockExtended, a, blockFields(res.Block)...)
	default:
		l.emit(EventBlockDuplicate, a, blockFields(res.Block)...)
	}
}

// BlockRejected records a refused block request and why it was refused.
// cidr, source and why are the request's, as sent.
func (l *Logger) BlockRejected(a Actor, cidr, source, why, reason string) {
	l.emit(EventBlockRejected, a, zap.String("cidr", cidr), zap.String("source", source),
		zap.String("why", why), zap.String("reason", reason))
}

// UnblockNow records a forced unblock; its entries are withdrawn next
// (see set_unblocked).
func (l *Logger) UnblockNow(a Actor, b queue.Block) {
	l.emit(EventUnblockNow, a, zap.String("cidr", b.CIDR.String()), zap.Int64("block_id", b.ID),
		zap.String("why", b.UnblockWhy))
}

// SetBlocked records that ident now enforces the block (one line per
// block, so that a grep for the cidr finds it). cidr may be invalid when
// the caller could not look it up.
func (l *Logger) SetBlocked(a Actor, ident string, blockID int64, cidr netip.Prefix) {
	l.emit(EventSetBlocked, a, zap.String("ident", ident), zap.Int64("block_id", blockID), zap.String("cidr", prefix(cidr)))
}

// SetUnblocked records that ident withdrew the block of one entry.
func (l *Logger) SetUnblocked(a Actor, ident string, entryID, blockID int64, cidr netip.Prefix) {
	l.emit(EventSetUnblocked, a, zap.String("ident", ident), zap.Int64("entry_id", entryID),
		zap.Int64("block_id", blockID), zap.String("cidr", prefix(cidr)))
}

func prefix(p netip.Prefix) string {
	if !p.IsValid() {
		return ""
	}
	return p.String()
}

// WhitelistAdded records a new whitelist entry.
func (l *Logger) WhitelistAdded(a Actor, e queue.WhitelistEntry) {
	l.emit(EventWhitelistAdded, a, zap.Int64("whitelist_id", e.ID), zap.String("cidr", e.CIDR.String()), zap.String("why", e.Why))
}

// WhitelistDeleted records a deleted whitelist entry.
func (l *Logger) WhitelistDeleted(a Actor, e queue.WhitelistEntry) {
	l.emit(EventWhitelistDeleted, a, zap.Int64("whitelist_id", e.ID), zap.String("cidr", prefix(e.CIDR)), zap.String("why", e.Why))
}

// SourceBlacklistAdded records a blacklisted source.
func (l *Logger) SourceBlacklistAdded(a Actor, e queue.SourceBlacklistEntry) {
	l.emit(EventSourceBlacklistAdded, a, zap.Int64("source_blacklist_id", e.ID), zap.String("source", e.Source), zap.String("why", e.Why))
}

// SourceBlacklistDeleted records a source taken off the blacklist.
func (l *Logger) SourceBlacklistDeleted(a Actor, e queue.SourceBlacklistEntry) {
	l.emit(EventSourceBlacklistDelete, a, zap.Int64("source_blacklist_id", e.ID), zap.String("source", e.Source), zap.String("why", e.Why))
}

// UserAdded records a new API user.
func (l *Logger) UserAdded(a Actor, username string, roles []string, password bool) {
	l.emit(EventUserAdded, a, zap.String("username", username), zap.Strings("roles", roles), zap.Bool("password", password))
}

// UserDisabled and UserEnabled record a user's access switched off or on.
func (l *Logger) UserDisabled(a Actor, username string) {
	l.emit(EventUserDisabled, a, zap.String("username", username))
}

// UserEnabled records a user allowed in again.
func (l *Logger) UserEnabled(a Actor, username string) {
	l.emit(EventUserEnabled, a, zap.String("username", username))
}

// TokenCreated records a new API token (never its secret).
func (l *Logger) TokenCreated(a Actor, id int64, username, name string) {
	l.emit(EventTokenCreated, a, zap.Int64("subject_token_id", id), zap.String("username", username), zap.String("token_name", name))
}

// TokenRevoked records a revoked API token.
func (l *Logger) TokenRevoked(a Actor, id int64) {
	l.emit(EventTokenRevoked, a, zap.Int64("subject_token_id", id))
}

// AuthFailed records refused credentials. The actor's Name is the user
// name tried with Basic, or "anonymous" for a token.
func (l *Logger) AuthFailed(a Actor, scheme, reason string) {
	l.emit(EventAuthFailed, a, zap.String("scheme", scheme), zap.String("reason", reason))
}

// SessionStarted records a login to the web pages; the session is the
// token tokenID.
func (l *Logger) SessionStarted(a Actor, tokenID int64) {
	l.emit(EventSessionStarted, a, zap.Int64("session_token_id", tokenID))
}

// SessionEnded records a logout from the web pages (its token revoked).
func (l *Logger) SessionEnded(a Actor, tokenID int64) {
	l.emit(EventSessionEnded, a, zap.Int64("session_token_id", tokenID))
}

// ConfigReloaded records a SIGHUP reload: what took effect and what
// needs a restart.
func (l *Logger) ConfigReloaded(a Actor, file string, applied, notReloaded []string) {
	l.emit(EventConfigReloaded, a, zap.String("file", file), zap.Strings("applied", applied), zap.Strings("not_reloaded", notReloaded))
}

// BGPPeer records a BGP session of ident's speaker coming up or going down.
func (l *Logger) BGPPeer(ident string, peer netip.Addr, asn uint32, up bool, state string) {
	ev := EventBGPPeerDown
	if up {
		ev = EventBGPPeerUp
	}
	l.emit(ev, Enforcer(ident), zap.String("ident", ident), zap.String("peer", peer.String()),
		zap.Uint32("peer_asn", asn), zap.String("state", state))
}

// DNSBLListener records ident's DNSBL server starting or stopping to
// answer for zones on addrs (UDP and TCP).
func (l *Logger) DNSBLListener(ident string, addrs, zones []string, up bool) {
	ev := EventDNSBLStopped
	if up {
		ev = EventDNSBLStarted
	}
	l.emit(ev, Enforcer(ident), zap.String("ident", ident), zap.Strings("addresses", addrs), zap.Strings("zones", zones))
}
