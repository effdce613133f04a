package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/bhrd/bhrd/internal/app"
	"github.com/bhrd/bhrd/pkg/audit"
	"github.com/bhrd/bhrd/pkg/config"
	"github.com/bhrd/bhrd/pkg/queue"
)

func identUsage() string {
	return `usage: bhrd ident <subcommand> [flags]

subcommands:
  list              every ident (enforcer name) in the store: last seen,
                    active or idle, queue depth and age of its oldest block
  forget -name N    remove an ident and its block queue (its entries stay,
                    as history); it is new again if it asks again

Every subcommand takes -config FILE (default ` + defaultConfig + `).
`
}

func cmdIdent(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, identUsage())
		return usageError{errors.New("missing subcommand")}
	}
	sub, rest := args[0], args[1:]
	fs, cfgPath := newFlagSet("ident "+sub, stderr)
	switch sub {
	case "list":
		if err := parseFlags(fs, rest); err != nil {
			return err
		}
		return withService(*cfgPath, func(ctx context.Context, svc *queue.Service) error {
			idents, err := svc.ListIdents(ctx)
			if err != nil {
				return err
			}
			now := svc.Now()
			w := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(w, "IDENT\tSTATE\tLAST SEEN\tQUEUED\tOLDEST QUEUED\tUNBLOCK DUE\tOLDEST DUE")
			for _, in := range idents {
				state := "active"
				switch {
				case !in.Active:
					state = "idle"
				case in.Backfilling:
					state = "catching up"
				}
				oldest := "-"
				if !in.OldestQueued.IsZero() {
					oldest = now.Sub(in.OldestQueued).Truncate(time.Second).String() + " ago"
				}
				seen := "never"
				if !in.LastSeen.IsZero() {
					seen = in.LastSeen.Format(time.RFC3339)
				}
				due := "-"
				if !in.OldestDue.IsZero() {
					due = now.Sub(in.OldestDue).Truncate(time.Second).String() + " ago"
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%d\t%s\n", in.Name, state, seen, in.Queued, oldest, in.UnblockDue, due)
			}
			return w.Flush()
		})
	case "forget":
		name := fs.String("name", "", "the ident to forget")
		if err := parseFlags(fs, rest); err != nil {
			return err
		}
		if *name == "" {
			return usageError{errors.New("-name is required")}
		}
		return withService(*cfgPath, func(ctx context.Context, svc *queue.Service) error {
			if err := svc.ForgetIdent(ctx, *name); err != nil {
				if errors.Is(err, queue.ErrNotFound) {
					return fmt.Errorf("no ident %q in the store", *name)
				}
				return err
			}
			fmt.Fprintf(stdout, "forgot ident %s\n", *name)
			return nil
		})
	default:
		fmt.Fprint(stderr, identUsage())
		return usageError{fmt.Errorf("unknown subcommand %q", sub)}
	}
}

// withService loads the config, opens (and migrates) the store and the
// audit log and runs fn with the queue Service over them, the local
// account as actor.
func withService(cfgPath string, fn func(ctx context.Context, svc *queue.Service) error) error {
	return withStore(cfgPath, func(ctx context.Context, cfg config.Config, st app.Store, aud *audit.Logger) error {
		svc, err := app.NewService(st, cfg, nil, aud)
		if err != nil {
			return err
		}
		return fn(queue.WithActor(ctx, cliActor()), svc)
	})
}
