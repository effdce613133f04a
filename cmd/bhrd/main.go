// Command bhrd is the BGP blackhole route injector daemon. main parses
// flags, builds loggers, turns signals into a context and hands over to
// internal/app; nothing else lives here.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/bhrd/bhrd/internal/app"
	_ "github.com/bhrd/bhrd/internal/planes" // every built-in plane
	"github.com/bhrd/bhrd/pkg/audit"
	"github.com/bhrd/bhrd/pkg/config"
)

// openAudit opens the audit log (log.audit); tests replace it.
var openAudit = audit.New

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const defaultConfig = "/etc/bhrd/bhrd.yaml"

const usage = `usage: bhrd <command> [flags]

commands:
  serve          run the daemon (API, queue, enforcers)
  migrate        create or upgrade the store's schema
  user           manage API users (add, list, disable)
  token          manage API tokens (create, list, revoke)
  ident          list or forget idents (enforcer names)
  check-config   validate a config file and print every problem
  dnsbl-key      make an access key for a dnsbl enforcer's zone
  version        print the version

Every command takes -config FILE (default ` + defaultConfig + `).
Run "bhrd <command> -h" for its flags.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	var err error
	switch cmd {
	case "serve":
		err = cmdServe(rest, stderr)
	case "migrate":
		err = cmdMigrate(rest, stdout, stderr)
	case "user":
		err = cmdUser(rest, stdout, stderr)
	case "token":
		err = cmdToken(rest, stdout, stderr)
	case "ident":
		err = cmdIdent(rest, stdout, stderr)
	case "check-config":
		err = cmdCheckConfig(rest, stdout, stderr)
	case "dnsbl-key":
		err = cmdDNSBLKey(rest, stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintf(stdout, "bhrd %s\n", version)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "bhrd: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "bhrd %s: %v\n", cmd, err)
		return 2
	default:
		fmt.Fprintf(stderr, "bhrd %s: %v\n", cmd, err)
		return 1
	}
}

// usageError is a mistake on the command line (exit status 2).
type usageError struct{ error }

func newFlagSet(name string, stderr io.Writer) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet("bhrd "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := fs.String("config", defaultConfig, "config file")
	return fs, cfg
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	return nil
}

func cmdServe(args []string, stderr io.Writer) error {
	fs, cfgPath := newFlagSet("serve", stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	log, level, err := app.NewLogger(cfg.Log.Level)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	log = log.With(zap.String("instance", cfg.Instance))
	audFile, err := openAudit(cfg.Log.Audit)
	if err != nil {
		return err
	}
	defer audFile.Close()
	aud := audFile.WithInstance(cfg.Instance)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// SIGHUP is taken before start so that an early one (logrotate) is
	// not fatal; it is handled once bhrd runs.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	a, err := startWaitingForStore(ctx, log, app.Options{Config: cfg, Logger: log, Audit: aud, LogLevel: &level})
	if err != nil {
		log.Error("start failed", zap.Error(err))
		return err
	}
	log.Info("bhrd started", zap.String("version", version), zap.String("config", *cfgPath),
		zap.String("store", cfg.Store.Driver), zap.String("api", a.APIAddr()))
	// Once shutdown begins, a second SIGINT or SIGTERM kills at once.
	go func() { <-ctx.Done(); stop() }()
	return a.Run(ctx, app.RunOptions{ConfigPath: *cfgPath, Reload: hup})
}

// storeRetryMax bounds the wait between two tries to open the store.
var storeRetryMax = 30 * time.Second

// startWaitingForStore builds and starts bhrd; while the store can not be
// opened or read (PostgreSQL down at boot: the postgres driver only) it logs, tells systemd why in
// STATUS, and tries again with backoff (1 s doubling to storeRetryMax)
// until ctx ends. Any other failure ends the start.
func startWaitingForStore(ctx context.Context, log *zap.Logger, opts app.Options) (*app.App, error) {
	wait := time.Second
	for {
		a, err := app.New(ctx, opts)
		if err == nil {
			if err = a.Start(ctx); err == nil {
				return a, nil
			}
			_ = a.Stop(context.Background())
		}
		// PostgreSQL only: an SQLite file that does not open is a
		// mistake to fix, not a server to wait for.
		if !errors.Is(err, app.ErrStore) || opts.Config.Store.Driver != "postgres" || ctx.Err() != nil {
			return nil, err
		}
		log.Warn("store not available: waiting to start", zap.Error(err), zap.Duration("retry_in", wait))
		app.NotifyWaiting("waiting for the store: "+err.Error(), wait)
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(wait):
		}
		wait = min(wait*2, storeRetryMax)
	}
}

func cmdMigrate(args []string, stdout, stderr io.Writer) error {
	fs, cfgPath := newFlagSet("migrate", stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	st, applied, err := app.OpenMigrated(context.Background(), cfg.Store)
	if err != nil {
		return err
	}
	defer st.Close()
	if len(applied) == 0 {
		fmt.Fprintln(stdout, "schema is up to date")
		return nil
	}
	for _, m := range applied {
		fmt.Fprintf(stdout, "applied %s\n", m)
	}
	return nil
}

func cmdCheckConfig(args []string, stdout, stderr io.Writer) error {
	fs, cfgPath := newFlagSet("check-config", stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if _, err := config.Load(*cfgPath); err != nil {
		var ps config.Problems
		if errors.As(err, &ps) {
			for _, p := range ps {
				fmt.Fprintf(stderr, "%s: %s: %s\n", *cfgPath, p.Key, p.Message)
			}
			return fmt.Errorf("%d problem(s) in %s", len(ps), *cfgPath)
		}
		return err
	}
	fmt.Fprintf(stdout, "%s: ok\n", *cfgPath)
	return nil
}
