// Package migrate applies versioned SQL migrations embedded in the binary.
// Both stores use it, each with its own dialect's files and a small adapter,
// so "bhrd migrate" behaves the same on PostgreSQL and SQLite: files are
// named NNNN_description.sql, applied in order, each in its own
// transaction together with the row that records it; running it again is a
// no-op.
package migrate

import (
	"context"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
)

// DB is what a store provides to run its migrations.
type DB interface {
	// Applied creates the version table when missing and returns the
	// versions already applied. Implementations should take a lock that
	// serialises concurrent migrators (e.g. an advisory lock) until Done.
	Applied(ctx context.Context) (map[int]bool, error)
	// Apply runs one migration's SQL and records its version atomically.
	Apply(ctx context.Context, m Migration) error
	// Done releases whatever Applied acquired.
	Done(ctx context.Context) error
}

// Migration is one versioned SQL file.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

// Load reads NNNN_name.sql files from dir in fsys, sorted by version.
func Load(fsys fs.FS, dir string) ([]Migration, error) {
	files, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	var out []Migration
	seen := map[int]string{}
	for _, f := range files {
		name := f.Name()
		if f.IsDir() || !strings.HasSuffix(name, ".sql") {
			continue
		}
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration %q: name must be NNNN_description.sql", name)
		}
		if other, dup := seen[v]; dup {
			return nil, fmt.Errorf("migrations %q and %q share version %d", other, name, v)
		}
		seen[v] = name
		b, err := fs.ReadFile(fsys, path.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("read migration %q: %w", name, err)
		}
		out = append(out, Migration{Version: v, Name: name, SQL: string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out, nil
}

// Run applies every migration not yet applied and returns the names of
// those it applied (empty when the schema was already current).
func Run(ctx context.Context, db DB, ms []Migration) (applied []string, err error) {
	done, err := db.Applied(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	defer func() {
		if derr := db.Done(ctx); derr != nil && err == nil {
			err = fmt.Errorf("migrate: %w", derr)
		}
	}()
	for _, m := range ms {
		if done[m.Version] {
			continue
		}
		if err := db.Apply(ctx, m); err != nil {
			return applied, fmt.Errorf("migration %s: %w", m.Name, err)
		}
		applied = append(applied, m.Name)
	}
	return applied, nil
}
