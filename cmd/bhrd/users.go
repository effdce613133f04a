package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/bhrd/bhrd/internal/app"
	"github.com/bhrd/bhrd/pkg/audit"
	"github.com/bhrd/bhrd/pkg/auth"
	"github.com/bhrd/bhrd/pkg/config"
)

// stdin is where -password-stdin reads; tests replace it.
var stdin io.Reader = os.Stdin

func userUsage() string {
	return `usage: bhrd user <add|list|disable|enable> [flags]

  add      -username U -role R[,R] [-password-stdin | -password-file F]
           roles: ` + strings.Join(auth.Roles(), ", ") + `
           without a password the user can only use API tokens
  list     list users (no secrets)
  disable  -username U   (its passwords and tokens stop working)
  enable   -username U

Every subcommand takes -config FILE (default ` + defaultConfig + `).
`
}

const tokenUsage = `usage: bhrd token <create|list|revoke> [flags]

  create  -username U [-name N]   prints the new token once, on stdout
  list    list tokens (ids, users, names; never secrets)
  revoke  -id N

Every subcommand takes -config FILE (default ` + defaultConfig + `).
`

// cliActor names the local account that ran a command, for the audit log.
func cliActor() audit.Actor {
	name := os.Getenv("SUDO_USER")
	if name == "" {
		if u, err := user.Current(); err == nil {
			name = u.Username
		} else {
			name = strconv.Itoa(os.Getuid())
		}
	}
	return audit.Actor{Name: "cli:" + name}
}

// withAuth loads the config, opens (and migrates) the store and the audit
// log and runs fn with an Authenticator over it.
func withAuth(cfgPath string, fn func(ctx context.Context, a *auth.Authenticator, aud *audit.Logger) error) error {
	return withStore(cfgPath, func(ctx context.Context, _ config.Config, st app.Store, aud *audit.Logger) error {
		// No cache: every command does one thing and exits.
		return fn(ctx, auth.NewAuthenticator(st, auth.AuthenticatorOptions{CacheTTL: -1}), aud)
	})
}

// withStore loads the config, opens (and migrates) the store and the
// audit log, and runs fn with them; the store and log are closed after.
func withStore(cfgPath string, fn func(ctx context.Context, cfg config.Config, st app.Store, aud *audit.Logger) error) error {
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return err
	}
	audFile, err := openAudit(cfg.Log.Audit)
	if err != nil {
		return err
	}
	defer audFile.Close()
	aud := audFile.WithInstance(cfg.Instance)
	ctx := context.Background()
	st, _, err := app.OpenMigrated(ctx, cfg.Store)
	if err != nil {
		return err
	}
	defer st.Close()
	return fn(ctx, cfg, st, aud)
}

func cmdUser(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, userUsage())
		return usageError{errors.New("missing subcommand")}
	}
	sub, rest := args[0], args[1:]
	fs, cfgPath := newFlagSet("user "+sub, stderr)
	switch sub {
	case "add":
		username := fs.String("username", "", "user name (letters, digits, @ . + - _)")
		roles := fs.String("role", "", "comma-separated roles: "+strings.Join(auth.Roles(), ", "))
		pwStdin := fs.Bool("password-stdin", false, "read the password from the first line of standard input")
		pwFile := fs.String("password-file", "", "read the password from the first line of this file")
		if err := parseFlags(fs, rest); err != nil {
			return err
		}
		if *username == "" {
			return usageError{errors.New("-username is required")}
		}
		rs, err := auth.ParseRoles(*roles)
		if err != nil {
			return usageError{fmt.Errorf("-role: %w", err)}
		}
		if *pwStdin && *pwFile != "" {
			return usageError{errors.New("use only one of -password-stdin and -password-file")}
		}
		var password string
		switch {
		case *pwStdin:
			if password, err = readPassword(stdin); err != nil {
				return fmt.Errorf("read password from standard input: %w", err)
			}
		case *pwFile != "":
			f, err := os.Open(*pwFile)
			if err != nil {
				return fmt.Errorf("read password: %w", err)
			}
			password, err = readPassword(f)
			f.Close()
			if err != nil {
				return fmt.Errorf("read password from %s: %w", *pwFile, err)
			}
		}
		return withAuth(*cfgPath, func(ctx context.Context, a *auth.Authenticator, aud *audit.Logger) error {
			u, err := a.AddUser(ctx, *username, password, rs)
			if err != nil {
				return err
			}
			aud.UserAdded(cliActor(), u.Username, u.Roles, password != "")
			fmt.Fprintf(stdout, "created user %s (id %d) with roles %s\n", u.Username, u.ID, strings.Join(u.Roles, ","))
			if password == "" {
				fmt.Fprintf(stdout, "no password set: %s can only use API tokens (bhrd token create -username %s)\n", u.Username, u.Username)
			}
			return nil
		})
	case "list":
		if err := parseFlags(fs, rest); err != nil {
			return err
		}
		return withAuth(*cfgPath, func(ctx context.Context, a *auth.Authenticator, _ *audit.Logger) error {
			users, err := a.Store().ListUsers(ctx)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tUSERNAME\tROLES\tPASSWORD\tDISABLED\tCREATED")
			for _, u := range users {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", u.ID, u.Username, strings.Join(u.Roles, ","),
					yesNo(u.PasswordHash != ""), yesNo(u.Disabled), u.Created.UTC().Format(time.RFC3339))
			}
			return tw.Flush()
		})
	case "disable", "enable":
		username := fs.String("username", "", "user name")
		if err := parseFlags(fs, rest); err != nil {
			return err
		}
		if *username == "" {
			return usageError{errors.New("-username is required")}
		}
		disable := sub == "disable"
		return withAuth(*cfgPath, func(ctx context.Context, a *auth.Authenticator, aud *audit.Logger) error {
			if err := a.SetDisabled(ctx, *username, disable); err != nil {
				return err
			}
			if disable {
				aud.UserDisabled(cliActor(), *username)
			} else {
				aud.UserEnabled(cliActor(), *username)
			}
			if disable {
				fmt.Fprintf(stdout, "disabled user %s (a running bhrd refuses it within %s)\n", *username, auth.DefaultCacheTTL)
			} else {
				fmt.Fprintf(stdout, "enabled user %s\n", *username)
			}
			return nil
		})
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, userUsage())
		return nil
	}
	fmt.Fprint(stderr, userUsage())
	return usageError{fmt.Errorf("unknown subcommand %q", sub)}
}

func cmdToken(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, tokenUsage)
		return usageError{errors.New("missing subcommand")}
	}
	sub, rest := args[0], args[1:]
	fs, cfgPath := newFlagSet("token "+sub, stderr)
	switch sub {
	case "create":
		username := fs.String("username", "", "the user the token acts as")
		name := fs.String("name", "", "a label, e.g. the host or tool that uses the token")
		if err := parseFlags(fs, rest); err != nil {
			return err
		}
		if *username == "" {
			return usageError{errors.New("-username is required")}
		}
		return withAuth(*cfgPath, func(ctx context.Context, a *auth.Authenticator, aud *audit.Logger) error {
			secret, t, err := a.CreateToken(ctx, *username, *name)
			if err != nil {
				return err
			}
			aud.TokenCreated(cliActor(), t.ID, t.Username, *name)
			// The secret alone on stdout, so that TOKEN=$(bhrd token create ...) works.
			fmt.Fprintf(stderr, "created token %d for %s; it is shown only now and cannot be recovered:\n", t.ID, t.Username)
			fmt.Fprintln(stdout, secret)
			return nil
		})
	case "list":
		if err := parseFlags(fs, rest); err != nil {
			return err
		}
		return withAuth(*cfgPath, func(ctx context.Context, a *auth.Authenticator, _ *audit.Logger) error {
			tokens, err := a.Store().ListTokens(ctx)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tUSER\tNAME\tCREATED\tREVOKED")
			for _, t := range tokens {
				revoked := "-"
				if !t.Revoked.IsZero() {
					revoked = t.Revoked.UTC().Format(time.RFC3339)
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", t.ID, t.Username, t.Name, t.Created.UTC().Format(time.RFC3339), revoked)
			}
			return tw.Flush()
		})
	case "revoke":
		id := fs.Int64("id", 0, "token id (see bhrd token list)")
		if err := parseFlags(fs, rest); err != nil {
			return err
		}
		if *id <= 0 {
			return usageError{errors.New("-id is required")}
		}
		return withAuth(*cfgPath, func(ctx context.Context, a *auth.Authenticator, aud *audit.Logger) error {
			if err := a.RevokeToken(ctx, *id); err != nil {
				return err
			}
			aud.TokenRevoked(cliActor(), *id)
			fmt.Fprintf(stdout, "revoked token %d (a running bhrd refuses it within %s)\n", *id, auth.DefaultCacheTTL)
			return nil
		})
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, tokenUsage)
		return nil
	}
	fmt.Fprint(stderr, tokenUsage)
	return usageError{fmt.Errorf("unknown subcommand %q", sub)}
}

// readPassword reads the first line of r, without its line ending.
func readPassword(r io.Reader) (string, error) {
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		return "", errors.New("empty password")
	}
	return pw, nil
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
