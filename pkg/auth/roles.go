package auth

import (
	"fmt"
	"slices"
	"strings"
)

// Permission is one thing a user may do. The first four keep BHR's Django
// permission names so that a BHR operator recognises them.
type Permission string

const (
	// PermAddBlock allows POST api/block and api/mblock.
	PermAddBlock Permission = "add_block"
	// PermChangeBlock allows api/unblock_now.
	PermChangeBlock Permission = "change_block"
	// PermAddBlockEntry allows an enforcer to read its block queue and mark
	// blocks set_blocked.
	PermAddBlockEntry Permission = "add_blockentry"
	// PermChangeBlockEntry allows an enforcer to read its unblock queue and
	// mark entries set_unblocked.
	PermChangeBlockEntry Permission = "change_blockentry"
	// PermRead allows every read-only endpoint (lists, query, list.csv).
	PermRead Permission = "read"
	// PermChangeWhitelist allows adding and deleting whitelist entries.
	PermChangeWhitelist Permission = "change_whitelist"
	// PermChangeSourceBlacklist allows adding and deleting blacklisted sources.
	PermChangeSourceBlacklist Permission = "change_source_blacklist"
	// PermSkipWhitelist allows skip_whitelist on a block request. It is kept
	// apart from add_block because it also bypasses the prefix-length and
	// source-blacklist rules.
	PermSkipWhitelist Permission = "skip_whitelist"
	// PermManageUsers allows user and token administration.
	PermManageUsers Permission = "manage_users"
)

// AllPermissions lists every permission, in documentation order.
var AllPermissions = []Permission{
	PermAddBlock, PermChangeBlock, PermAddBlockEntry, PermChangeBlockEntry, PermRead,
	PermChangeWhitelist, PermChangeSourceBlacklist, PermSkipWhitelist, PermManageUsers,
}

// Role names.
const (
	// RoleUser is BHR's "BHR Users" group: everything BHR allowed.
	RoleUser = "user"
	// RoleBlocker is BHR's "BHR Blockers" group: detection tools.
	RoleBlocker = "blocker"
	// RoleBlockManager is BHR's "BHR Block Managers" group: enforcers.
	RoleBlockManager = "block-manager"
	// RoleAdmin may do everything, including whitelist changes,
	// skip_whitelist and user administration.
	RoleAdmin = "admin"
	// RoleReadOnly may only read.
	RoleReadOnly = "read-only"
)

var rolePerms = map[string][]Permission{
	RoleUser:         {PermAddBlock, PermChangeBlock, PermAddBlockEntry, PermChangeBlockEntry, PermRead},
	RoleBlocker:      {PermAddBlock, PermRead},
	RoleBlockManager: {PermAddBlockEntry, PermChangeBlockEntry, PermRead},
	RoleAdmin:        AllPermissions,
	RoleReadOnly:     {PermRead},
}

// Roles returns the known role names, sorted.
func Roles() []string {
	names := make([]string, 0, len(rolePerms))
	for n := range rolePerms {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// RolePermissions returns the permissions a role grants (nil for an
// unknown role).
func RolePermissions(role string) []Permission {
	return slices.Clone(rolePerms[role])
}

// ValidRole reports whether role is a known role name.
func ValidRole(role string) bool {
	_, ok := rolePerms[role]
	return ok
}

// ParseRoles splits a comma-separated role list, checks every name and
// drops duplicates, keeping the order given.
func ParseRoles(s string) ([]string, error) {
	var out []string
	for _, r := range strings.Split(s, ",") {
		r = strings.TrimSpace(r)
		if r == "" {
			continue
		}
		if !ValidRole(r) {
			return nil, fmt.Errorf("unknown role %q (known roles: %s)", r, strings.Join(Roles(), ", "))
		}
		if !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("at least one role is required (known roles: %s)", strings.Join(Roles(), ", "))
	}
	return out, nil
}

// PermissionSet is the union of the permissions of some roles.
type PermissionSet map[Permission]struct{}

// PermissionsOf returns the permissions granted by roles. Unknown role
// names (e.g. written by a newer version) grant nothing.
func PermissionsOf(roles []string) PermissionSet {
	set := PermissionSet{}
	for _, r := range roles {
		for _, p := range rolePerms[r] {
			set[p] = struct{}{}
		}
	}
	return set
}

// Has reports whether p is in the set.
func (s PermissionSet) Has(p Permission) bool {
	_, ok := s[p]
	return ok
}
