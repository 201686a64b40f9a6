package backup

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"filippo.io/age"

	"github.com/etcdops/etcdops/internal/codec"
	"github.com/etcdops/etcdops/internal/objstore"
)

const usage = `usage:
  etcdops backup run   --config FILE
  etcdops backup check --config FILE
  etcdops backup list  --config FILE [--json]
  etcdops backup fetch --config FILE (--key KEY | --url s3://BUCKET/KEY) --out PATH [--age-identity FILE]`

// Main is `etcdops backup ...` (args after "backup"): it returns the exit
// status. A failure is one line on stderr, without any credential.
func Main(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signalContext()
	defer stop()
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return 2
	}
	fs := flag.NewFlagSet("etcdops backup "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	config := fs.String("config", DefaultConfig, "the backup configuration file")
	asJSON := fs.Bool("json", false, "list: print JSON")
	key := fs.String("key", "", "fetch: the object key")
	url := fs.String("url", "", "fetch: s3://bucket/key")
	out := fs.String("out", "", "fetch: the file to write")
	identity := fs.String("age-identity", "", "fetch: the age identity file of an encrypted object")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	c, err := Load(*config)
	if err == nil && c.S3 != nil {
		defer objstore.LimitMemory(*c.S3)()
	}
	if err == nil {
		switch args[0] {
		case "run":
			err = runCmd(ctx, c, stdout)
		case "check":
			// Load read and checked the file and its credentials file.
			fmt.Fprintf(stdout, "%s: the backup configuration is valid\n", *config)
		case "list":
			err = listCmd(ctx, c, stdout, *asJSON)
		case "fetch":
			err = fetchCmd(ctx, c, stdout, *key, *url, *out, *identity)
		default:
			fmt.Fprintln(stderr, usage)
			return 2
		}
	}
	if err != nil {
		msg := strings.ReplaceAll(err.Error(), "\n", " ")
		msg = scrub(msg, c.Secrets())
		fmt.Fprintf(stderr, "etcdops backup %s: %s\n", args[0], msg)
		return 1
	}
	return 0
}

// signalContext is cancelled by SIGTERM (systemctl stop) or SIGINT, with
// the signal as its cause, so that the error says why the run stopped.
func signalContext() (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		select {
		case s := <-sigs:
			name := "SIGTERM"
			if s == os.Interrupt {
				name = "SIGINT"
			}
			cancel(fmt.Errorf("stopped by %s", name))
		case <-ctx.Done():
		}
	}()
	return ctx, func() {
		signal.Stop(sigs)
		cancel(nil)
	}
}

func runCmd(ctx context.Context, c Config, stdout io.Writer) error {
	res, err := Run(ctx, c, time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, res.Line())
	return nil
}

func listCmd(ctx context.Context, c Config, stdout io.Writer, asJSON bool) error {
	store, err := c.Store()
	if err != nil {
		return err
	}
	if store == nil {
		return errors.New("no [s3] section in the configuration: there is no store to list")
	}
	objs, err := store.List(ctx)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(objs)
	}
	tw := tabwriter.NewWriter(stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tREVISION\tSIZE\tMEMBER\tURL")
	for _, o := range objs {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\n", o.Time.Format(time.RFC3339), o.Revision, o.Size, o.Member, o.URL)
	}
	return tw.Flush()
}

func fetchCmd(ctx context.Context, c Config, stdout io.Writer, key, url, out, identity string) error {
	store, err := c.Store()
	if err != nil {
		return err
	}
	if store == nil {
		return errors.New("no [s3] section in the configuration: there is no store to fetch from")
	}
	if url != "" {
		if key, err = store.KeyFromURL(url); err != nil {
			return err
		}
	}
	if key == "" || out == "" {
		return errors.New("give --key or --url, and --out")
	}
	var ids []age.Identity
	if identity != "" {
		if ids, err = codec.ReadIdentities(identity); err != nil {
			return err
		}
	}
	f, err := Fetch(ctx, store, key, out, ids)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: revision %d, sha256 %s, from %s\n", f.Dest, f.Status.Revision, f.Status.SHA256, f.Object.URL)
	return nil
}
