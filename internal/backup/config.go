// Package backup is the scheduled backup of an etcd cluster, run on every
// member by a systemd timer (`etcdops backup run --config F`) without
// Ansible: one member per period, chosen through etcd itself, takes a
// verified snapshot, keeps it locally with its newest N, uploads it to an
// S3-compatible store (internal/objstore) and prunes the bucket, and
// records what it did in a state file. The etcd_backup module lists,
// fetches and reports on what the schedule made.
package backup

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"gopkg.in/ini.v1"

	"github.com/etcdops/etcdops/internal/codec"
	"github.com/etcdops/etcdops/internal/etcdconn"
	"github.com/etcdops/etcdops/internal/objstore"
)

// DefaultConfig is where the schedule's configuration lives.
const DefaultConfig = "/etc/etcdops/backup.conf"

// Config is the backup configuration file, read and checked.
type Config struct {
	Path     string
	Etcd     etcdconn.Options
	Period   time.Duration // one backup per period for the cluster
	Member   string        // the name in the object's key; empty: the member's own
	LockTTL  int           // seconds the lock outlives a holder that died
	LockWait time.Duration // how long to wait for another member's run
	Dir      string        // local snapshots and state files
	Keep     int           // local snapshots kept
	S3       *objstore.Config
	S3Keep   int
	Layers   codec.Layers
}

// Load reads a configuration file and the credentials file it names. Both
// must be readable by their owner only.
func Load(path string) (Config, error) {
	c := Config{Path: path}
	if err := ownerOnly(path); err != nil {
		return c, err
	}
	f, err := ini.LoadSources(ini.LoadOptions{Insensitive: true}, path)
	if err != nil {
		return c, fmt.Errorf("read %s: %w", path, err)
	}
	bad := func(section, key string, err error) error {
		return fmt.Errorf("%s: [%s] %s: %w", path, section, key, err)
	}
	e := f.Section("etcd")
	if s := e.Key("endpoints").String(); s != "" {
		for _, ep := range strings.Split(s, ",") {
			if ep = strings.TrimSpace(ep); ep != "" {
				c.Etcd.Endpoints = append(c.Etcd.Endpoints, ep)
			}
		}
	}
	c.Etcd.CACert, c.Etcd.ClientCert, c.Etcd.ClientKey = e.Key("ca_cert").String(), e.Key("client_cert").String(), e.Key("client_key").String()
	c.Etcd.DialTimeout, c.Etcd.CommandTimeout = 5, 30

	s := f.Section("schedule")
	if c.Period, err = duration(s.Key("period").MustString("6h")); err != nil || c.Period < time.Second {
		return c, bad("schedule", "period", fmt.Errorf("give a duration like 6h or 30m: %v", s.Key("period").String()))
	}
	c.Member = s.Key("member").String()
	// HasKey before Key: ini's Key adds the key it is asked for.
	c.LockTTL = 10
	if s.HasKey("lock_ttl") {
		if c.LockTTL, err = s.Key("lock_ttl").Int(); err != nil || c.LockTTL < 2 {
			return c, bad("schedule", "lock_ttl", errors.New("give whole seconds, at least 2"))
		}
	}
	c.LockWait = c.Period
	if s.HasKey("lock_wait") {
		if c.LockWait, err = duration(s.Key("lock_wait").String()); err != nil {
			return c, bad("schedule", "lock_wait", err)
		}
	}

	l := f.Section("local")
	c.Dir = l.Key("dir").MustString("/var/lib/etcd-backup/scheduled")
	if c.Keep = l.Key("keep").MustInt(5); c.Keep < 1 {
		return c, bad("local", "keep", errors.New("at least 1"))
	}

	if !f.HasSection("s3") {
		return c, nil
	}
	k := f.Section("s3")
	c.S3 = &objstore.Config{
		Endpoint: k.Key("endpoint").String(), Bucket: k.Key("bucket").String(), Prefix: k.Key("prefix").String(),
		Region: k.Key("region").MustString("us-east-1"), PathStyle: k.Key("path_style").MustBool(true),
		CAFile: k.Key("ca_file").String(),
	}
	if k.HasKey("part_size") {
		n, err := size(k.Key("part_size").String())
		if err != nil {
			return c, bad("s3", "part_size", err)
		}
		c.S3.PartSize = n
	}
	if c.S3Keep = k.Key("keep").MustInt(10); c.S3Keep < 1 {
		return c, bad("s3", "keep", errors.New("at least 1"))
	}
	c.Layers = codec.Layers{Compression: k.Key("compression").MustString(codec.None), Recipient: k.Key("age_recipient").String()}
	if err := c.Layers.Validate(); err != nil {
		return c, fmt.Errorf("%s: [s3] %w", path, err)
	}
	creds := k.Key("credentials_file").String()
	if creds == "" {
		return c, bad("s3", "credentials_file", errors.New("the file with access_key_id and secret_access_key is needed"))
	}
	if c.S3.AccessKey, c.S3.SecretKey, err = ReadCredentials(creds); err != nil {
		return c, err
	}
	if _, err := objstore.New(*c.S3); err != nil {
		return c, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// ReadCredentials reads access_key_id and secret_access_key from a
// key = value file readable by its owner only. Its errors never quote the
// file.
func ReadCredentials(path string) (accessKey, secretKey string, err error) {
	if err := ownerOnly(path); err != nil {
		return "", "", err
	}
	cf, err := ini.LoadSources(ini.LoadOptions{Insensitive: true}, path)
	if err != nil {
		// ini's errors quote the line they stopped at: say only where.
		return "", "", fmt.Errorf("credentials file %s cannot be read as key = value lines", path)
	}
	d := cf.Section(ini.DefaultSection)
	accessKey, secretKey = d.Key("access_key_id").String(), d.Key("secret_access_key").String()
	if accessKey == "" || secretKey == "" {
		return "", "", fmt.Errorf("credentials file %s: access_key_id and secret_access_key are both needed", path)
	}
	return accessKey, secretKey, nil
}

// Secrets are the strings no output may contain.
func (c Config) Secrets() []string {
	if c.S3 == nil {
		return nil
	}
	return []string{c.S3.SecretKey, c.S3.AccessKey}
}

// Store is the configured bucket, or nil without an [s3] section.
func (c Config) Store() (*objstore.Store, error) {
	if c.S3 == nil {
		return nil, nil
	}
	return objstore.New(*c.S3)
}

// ownerOnly refuses a file that its group or others may read or write.
func ownerOnly(path string) error {
	info, err := os.Stat(path)
	if err != nil {
		return err
	}
	if m := info.Mode().Perm(); m&0o077 != 0 {
		return fmt.Errorf("%s is mode %04o: it holds settings for the backup and must be readable by its owner only (chmod 600 %s)", path, m, path)
	}
	return nil
}

// duration reads "6h", "30m", "7d" or a number of seconds.
func duration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if n, err := strconv.ParseFloat(s, 64); err == nil {
		return time.Duration(n * float64(time.Second)), nil
	}
	if d, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.ParseFloat(d, 64); err == nil {
			return time.Duration(n * float64(24*time.Hour)), nil
		}
	}
	return time.ParseDuration(s)
}

// size reads "16MiB", "8M" or a number of bytes.
func size(s string) (uint64, error) {
	s = strings.TrimSpace(s)
	mult := uint64(1)
	for _, u := range []struct {
		suffix string
		m      uint64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.m
			break
		}
	}
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("give a size like 16MiB")
	}
	return n * mult, nil
}
